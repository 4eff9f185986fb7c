"""``extract(neuropil=..., client=...)``: the cluster gives the single-machine record."""

from __future__ import annotations

import numpy as np
import pytest

from sima_fast import ImagingDataset, Sequence
from sima_fast.ROI import ROI

pytest.importorskip("distributed")


def test_neuropil_on_a_cluster_is_bit_identical():
    import dask
    from distributed import Client, LocalCluster

    import sima_fast.distributed as sd

    rng = np.random.default_rng(3)
    movie = rng.uniform(10, 100, (300, 1, 30, 30, 1)).astype(np.float32)
    movie[5, 0, :4] = np.nan
    ds = ImagingDataset([Sequence.create("ndarray", movie)], None)
    yy, xx = np.ogrid[:30, :30]
    centres = [(8, 8), (20, 18)]
    rois = [ROI(mask=((yy - cy) ** 2 + (xx - cx) ** 2 <= 9)[None]) for cy, cx in centres]
    opts = {"min_pixels": 80, "coefficient": "estimate"}
    with (
        dask.config.set(sd.DASK_CONFIG),
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            dashboard_address=":0",
            worker_dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        got = ds.extract(rois, save_summary=False, neuropil=opts, client=client)
    want = ds.extract(rois, save_summary=False, neuropil=opts)
    for key in ("raw", "neuropil", "corrected"):
        np.testing.assert_array_equal(got[key][0], want[key][0])
    np.testing.assert_array_equal(
        got["neuropil_params"]["coefficient"], want["neuropil_params"]["coefficient"]
    )
