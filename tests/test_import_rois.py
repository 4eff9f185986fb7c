"""Tests for sima_fast.transform_rois: importing ROIs across sessions.

See docs/contract.md#roi-import.

Ground truth comes from pairs of simulated sessions that view one simulated
scene through known geometric transforms: the source session is a crop of the
scene, the target session a rotated, scaled, sheared and shifted view of it.
The imported ROIs are compared with the source ROIs mapped through the known
transform (mean vertex distance, and IoU of the rasterised masks).
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
from skimage.transform import (
    AffineTransform,
    EuclideanTransform,
    PolynomialTransform,
    ProjectiveTransform,
    SimilarityTransform,
    warp,
)

import sima_fast as sima
from sima_fast._geometry import polygon_to_mask
from sima_fast.imaging import ImagingDataset
from sima_fast.misc import simulate_movie
from sima_fast.registration import (
    PRE_PROCESSING_METHODS,
    TRANSFORM_METHODS,
    RegistrationWarning,
    pre_process_image,
    register_images,
)
from sima_fast.ROI import ROI, ROIList
from sima_fast.transform_rois import (
    MissingAnchorWarning,
    ROIOutsideFrameWarning,
    clip_rois_to_frame,
    estimate_plane_transforms_from_anchors,
    import_transformed_rois,
    match_anchor_order,
)

WORLD = 320  # side of the simulated scene (px)
VIEW = 128  # side of each session's field of view (px)
SHIFT = 0.2 * VIEW  # 20 % of the field of view
DEG = np.pi / 180

# --------------------------------------------------------------------------
# Simulated sessions
# --------------------------------------------------------------------------


def view_transform(
    rotation: float = 0.0,
    scale: float = 1.0,
    shear: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
    size: int = VIEW,
) -> AffineTransform:
    """Map scene ROI coordinates to the ROI coordinates of a ``size``² view.

    The view is centred on the scene centre, rotated, scaled and sheared about
    it, then shifted by ``shift`` (px, in view coordinates).
    """
    centre = WORLD / 2
    return (
        AffineTransform(translation=(-centre, -centre))
        + AffineTransform(scale=scale, rotation=rotation, shear=shear)
        + AffineTransform(translation=(size / 2 + shift[0], size / 2 + shift[1]))
    )


def relative(source_view: AffineTransform, target_view: AffineTransform) -> AffineTransform:
    """The true source → target map between two views of the same scene."""
    return AffineTransform(matrix=target_view.params @ np.linalg.inv(source_view.params))


class Scene:
    """A simulated scene: one noise-free image per plane and the cell outlines."""

    def __init__(self, num_planes: int = 1, seed: int = 0) -> None:
        sim = simulate_movie(
            num_frames=1,
            num_planes=num_planes,
            frame_shape=(WORLD, WORLD),
            num_channels=2,
            cells_per_plane=300,
            seed=seed,
            dtype="float64",
        )
        self.images = sim.baseline  # (Z, Y, X, C)
        self.polygons = sim.polygons
        self.num_planes = num_planes

    def render(
        self,
        views: list,
        rng: np.random.Generator,
        frames: int = 3,
        size: int = VIEW,
        contrast: float = 1.0,
    ) -> np.ndarray:
        """A noisy movie ``(frames, Z, size, size, C)`` through one view per plane.

        Each view has its own vignetting; ``contrast`` raises the normalised
        image to that power (a different detector response).
        """
        planes = []
        for z, tf in enumerate(views):
            inverse = tf.inverse

            def scene_pixel(q: np.ndarray, inverse=inverse) -> np.ndarray:
                # view pixel centre q -> ROI coordinate q + 0.5 -> scene pixel index
                return inverse(q + 0.5) - 0.5

            channels = []
            for c in range(self.images.shape[-1]):
                img = warp(
                    self.images[z, :, :, c],
                    scene_pixel,
                    output_shape=(size, size),
                    order=3,
                    preserve_range=True,
                )
                channels.append(img)
            planes.append(np.stack(channels, axis=-1))
        base = np.stack(planes)  # (Z, Y, X, C)
        yy = (np.arange(size) + 0.5 - size / 2) / (size / 2)
        base = base * (1 - 0.2 * (yy[:, None] ** 2 + yy[None, :] ** 2))[None, :, :, None]
        if contrast != 1.0:
            top = base.max()
            base = top * (base / top) ** contrast
        noise_sd = np.sqrt(4.0 * base + 25.0)
        return np.stack([base + noise_sd * rng.standard_normal(base.shape) for _ in range(frames)])

    def session(self, views: list, seed: int, **kwargs) -> ImagingDataset:
        movie = self.render(views, np.random.default_rng(seed), **kwargs)
        return ImagingDataset(
            [sima.Sequence.create("ndarray", movie)], None, channel_names=["green", "red"]
        )

    def rois_in(self, views: list, size: int = VIEW, margin: float = 1.0) -> ROIList:
        """The cells lying wholly inside the views, in view coordinates."""
        rois = []
        for k, poly in enumerate(self.polygons):
            z = int(poly[0, 2])
            xy = views[z](poly[:, :2])
            if xy.min() >= margin and xy.max() <= size - margin:
                rois.append(
                    ROI(
                        polygons=np.column_stack([xy, poly[:, 2]]),
                        label=f"cell{k}",
                        id=f"id{k}",
                        tags={"cell", f"plane{z}"},
                        im_shape=(self.num_planes, size, size),
                    )
                )
        return ROIList(rois)


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


@pytest.fixture(scope="module")
def source(scene: Scene) -> tuple[ImagingDataset, AffineTransform]:
    """The source session (a crop of the scene) with its cells under 'cells'."""
    view = view_transform()
    dataset = scene.session([view], seed=1)
    dataset.add_ROIs(scene.rois_in([view]), "cells")
    return dataset, view


def import_quietly(*args, **kwargs) -> ROIList:
    """:func:`import_transformed_rois`, ignoring the cells that leave the target frame."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ROIOutsideFrameWarning)
        return import_transformed_rois(*args, **kwargs)


def accuracy(
    imported: ROIList, source_rois: ROIList, truths: list, im_shape: tuple[int, int, int]
) -> tuple[float, float, int]:
    """Mean vertex error, fraction of ROIs with IoU >= 0.7, and the number of unclipped ROIs.

    The vertex error is averaged over the ROIs whose true counterpart lies at
    least 2 px inside the target frame (their imported outline is not
    clipped); the IoU is computed for every ROI with at least 20 true pixels
    in the frame (whole cells have 50-130), clipped or not. Every ROI with
    any true pixel in the frame must have been imported.
    """
    by_id = {roi.id: roi for roi in imported}
    errors, good = [], []
    _, rows, cols = im_shape
    for roi in source_rois:
        (ring,) = roi.rings
        z = int(ring[0, 2])
        true_xy = truths[z](ring[:, :2])
        true_mask = polygon_to_mask(true_xy, (rows, cols))
        if not true_mask.any():
            continue
        got_mask = np.asarray(by_id[roi.id])[z]
        if true_mask.sum() >= 20:
            good.append((true_mask & got_mask).sum() / (true_mask | got_mask).sum() >= 0.7)
        if true_xy.min() < 2 or true_xy[:, 0].max() > cols - 2 or true_xy[:, 1].max() > rows - 2:
            continue
        (got,) = by_id[roi.id].rings
        assert int(got[0, 2]) == z
        errors.append(np.linalg.norm(got[:, :2] - true_xy, axis=1).mean())
    return float(np.mean(errors)), float(np.mean(good)), len(errors)


# --------------------------------------------------------------------------
# Image registration (no anchors)
# --------------------------------------------------------------------------

REGISTRATION_CASES = {
    "rot+15 scale+10 shear+ shift+-": (15 * DEG, 1.1, 0.1, (SHIFT, -SHIFT)),
    "rot-15 scale-10 shear- shift-+": (-15 * DEG, 0.9, -0.1, (-SHIFT, SHIFT)),
    "rot+15 scale-10 shift++": (15 * DEG, 0.9, 0.0, (SHIFT, SHIFT)),
    "rot-15 scale+10 shear+ shift--": (-15 * DEG, 1.1, 0.08, (-SHIFT, -SHIFT)),
    "small sub-pixel shift": (0.0, 1.0, 0.0, (3.3, -2.7)),
}


@pytest.mark.parametrize("case", list(REGISTRATION_CASES))
def test_registration_accuracy(scene, source, case):
    """≤ 1 px mean vertex error and ≥ 95 % of ROIs with IoU ≥ 0.7, without anchors."""
    src_ds, src_view = source
    rotation, scale, shear, shift = REGISTRATION_CASES[case]
    target_view = view_transform(rotation, scale, shear, shift)
    target = scene.session([target_view], seed=2)
    imported = import_quietly(target, src_ds, source_label="cells")
    truth = relative(src_view, target_view)
    error, good, n = accuracy(imported, src_ds.ROIs["cells"], [truth], (1, VIEW, VIEW))
    print(f"\n[{case}] {n} ROIs: mean vertex error {error:.3f} px, IoU >= 0.7: {good:.1%}")
    assert n >= 20
    assert error <= 1.0
    assert good >= 0.95
    assert all(roi.im_shape == (1, VIEW, VIEW) for roi in imported)


@pytest.mark.parametrize(
    ("method", "truth_view"),
    [
        ("euclidean", dict(rotation=-12 * DEG, shift=(15.0, 10.0))),
        ("similarity", dict(rotation=8 * DEG, scale=1.07, shift=(-12.0, 6.0))),
        ("affine", dict(rotation=5 * DEG, scale=0.95, shear=0.06, shift=(4.0, -9.0))),
        ("projective", dict(rotation=5 * DEG, scale=1.05, shift=(-6.0, 3.0))),
        ("polynomial", dict(rotation=-6 * DEG, scale=1.04, shear=0.05, shift=(8.0, 5.0))),
        ("piecewise-affine", dict(rotation=6 * DEG, scale=0.96, shift=(-5.0, -8.0))),
    ],
)
def test_registration_methods(scene, source, method, truth_view):
    """Every model family recovers a transform it can represent."""
    src_ds, src_view = source
    target_view = view_transform(**truth_view)
    target = scene.session([target_view], seed=3)
    imported = import_quietly(target, src_ds, method=method, source_label="cells")
    truth = relative(src_view, target_view)
    error, good, n = accuracy(imported, src_ds.ROIs["cells"], [truth], (1, VIEW, VIEW))
    print(f"\n[{method}] {n} ROIs: mean vertex error {error:.3f} px, IoU >= 0.7: {good:.1%}")
    assert error <= 1.0
    assert good >= 0.95


def test_registration_projective_truth():
    """A projective distortion is recovered by the projective model."""
    rng = np.random.default_rng(5)
    from scipy.ndimage import gaussian_filter

    scene = gaussian_filter(rng.standard_normal((112, 112)), 1.5)
    truth = ProjectiveTransform(
        matrix=np.array([[1.02, 0.05, -3.0], [-0.04, 0.98, 4.0], [4e-4, -3e-4, 1.0]])
    )
    moving = warp(scene, truth.inverse, order=3)
    tf = register_images(scene, moving, "projective")
    grid = np.mgrid[8:104:8, 8:104:8].reshape(2, -1).T[:, ::-1].astype(float)
    assert np.abs(tf(grid) - truth(grid)).max() < 0.1


def test_registration_polynomial_truth():
    """A quadratic distortion is recovered by the polynomial model."""
    rng = np.random.default_rng(6)
    from scipy.ndimage import gaussian_filter

    scene = gaussian_filter(rng.standard_normal((112, 112)), 1.5)
    params = np.array(
        [[2.0, 1.01, 0.02, 1e-4, -2e-4, 1e-4], [-3.0, -0.03, 0.99, -1e-4, 1e-4, 2e-4]]
    )
    truth = PolynomialTransform(params)
    moving = warp(scene, truth, order=3)  # moving(p) = scene(truth(p))
    # fixed = moving, moving = scene: the map takes moving's grid to scene's
    tf = register_images(moving, scene, "polynomial", order=2)
    grid = np.mgrid[12:100:8, 12:100:8].reshape(2, -1).T[:, ::-1].astype(float)
    assert np.abs(tf(grid) - truth(grid)).max() < 0.15


def test_registration_per_plane_and_channel_names():
    """Each plane gets its own transform; channels are chosen by name."""
    two_planes = Scene(num_planes=2, seed=4)
    src_views = [view_transform(), view_transform()]
    tgt_views = [
        view_transform(rotation=10 * DEG, shift=(12.0, -5.0)),
        view_transform(rotation=-8 * DEG, scale=1.05, shift=(-9.0, 7.0)),
    ]
    src_ds = two_planes.session(src_views, seed=5)
    src_ds.add_ROIs(two_planes.rois_in(src_views), "cells")
    target = two_planes.session(tgt_views, seed=6)
    imported = import_quietly(
        target, src_ds, source_channel="red", target_channel="red", source_label="cells"
    )
    truths = [relative(s, t) for s, t in zip(src_views, tgt_views)]
    error, good, n = accuracy(imported, src_ds.ROIs["cells"], truths, (2, VIEW, VIEW))
    print(f"\n[two planes, red channel] {n} ROIs: error {error:.3f} px, IoU>=0.7 {good:.1%}")
    assert {int(r.rings[0][0, 2]) for r in imported} == {0, 1}
    assert error <= 1.0
    assert good >= 0.95


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("equalize_adapthist", {}),
        ("equalize_hist", {}),
        ("gaussian", {"sigma": 0.7}),
    ],
)
def test_pre_processing_with_contrast_change(scene, source, method, kwargs):
    """Registration after pre-processing copes with a different detector response."""
    src_ds, src_view = source
    target_view = view_transform(rotation=-7 * DEG, scale=1.05, shift=(10.0, 14.0))
    target = scene.session([target_view], seed=7, contrast=0.5)
    imported = import_quietly(
        target,
        src_ds,
        source_label="cells",
        pre_processing_method=method,
        pre_processing_kwargs=kwargs,
    )
    truth = relative(src_view, target_view)
    error, good, _ = accuracy(imported, src_ds.ROIs["cells"], [truth], (1, VIEW, VIEW))
    print(f"\n[{method}] mean vertex error {error:.3f} px, IoU >= 0.7: {good:.1%}")
    assert error <= 1.0
    assert good >= 0.95


def test_different_frame_sizes(scene, source):
    """The target frame may be larger than the source frame."""
    src_ds, src_view = source
    big = 160
    target_view = view_transform(rotation=4 * DEG, shift=(6.0, -4.0), size=big)
    target = scene.session([target_view], seed=8, size=big)
    imported = import_quietly(target, src_ds, source_label="cells")
    truth = relative(src_view, target_view)
    error, good, _ = accuracy(imported, src_ds.ROIs["cells"], [truth], (1, big, big))
    assert all(roi.im_shape == (1, big, big) for roi in imported)
    assert error <= 1.0
    assert good >= 0.95


# --------------------------------------------------------------------------
# Anchors
# --------------------------------------------------------------------------

ANCHOR = np.array(
    [[20, 15], [64, 10], [110, 22], [118, 70], [100, 112], [60, 118], [14, 100], [8, 56]],
    dtype=float,
)

ANCHOR_TRUTHS = {
    "euclidean": EuclideanTransform(rotation=0.2, translation=(10, -14)),
    "similarity": SimilarityTransform(scale=1.08, rotation=-0.25, translation=(-6, 20)),
    "affine": AffineTransform(scale=(1.05, 0.93), rotation=0.1, shear=0.1, translation=(5, 3)),
    "projective": ProjectiveTransform(
        matrix=np.array([[1.01, 0.04, 3.0], [-0.05, 0.97, -2.0], [2e-4, -1e-4, 1.0]])
    ),
    "polynomial": PolynomialTransform(
        np.array([[3.0, 0.98, 0.03, 2e-4, -1e-4, 1e-4], [-2.0, 0.02, 1.03, -1e-4, 2e-4, 1e-4]])
    ),
    "piecewise-affine": AffineTransform(rotation=-0.15, translation=(8, 12)),
}


def blank_dataset(num_planes: int = 1, size: int = VIEW) -> ImagingDataset:
    movie = np.zeros((2, num_planes, size, size, 1))
    return ImagingDataset([sima.Sequence.create("ndarray", movie)], None)


def grid_rois(num_planes: int = 1, step: int = 16, size: int = VIEW) -> ROIList:
    """Small quadrilateral ROIs on a grid, on every plane."""
    rois = []
    for z in range(num_planes):
        for y in range(8, size - 8, step):
            for x in range(8, size - 8, step):
                quad = np.array([[x, y], [x + 6, y + 1], [x + 5, y + 7], [x - 1, y + 5]], float)
                quad += [0.3, 0.2]  # no pixel centre on an edge
                k = len(rois)
                rois.append(
                    ROI(
                        polygons=np.column_stack([quad, np.full(4, z)]),
                        label=f"r{k}",
                        id=f"id{k}",
                        tags={"grid"},
                    )
                )
    return ROIList(rois)


def anchored_pair(truths: list, num_planes: int = 1, roll: int = 3):
    """Source and target datasets with anchors related by ``truths`` (one per plane)."""
    src, tgt = blank_dataset(num_planes), blank_dataset(num_planes)
    src_anchor, tgt_anchor = [], []
    for z, tf in enumerate(truths):
        if tf is None:
            continue
        src_anchor.append(np.column_stack([ANCHOR, np.full(len(ANCHOR), z)]))
        moved = np.roll(tf(ANCHOR), roll, axis=0)
        tgt_anchor.append(np.column_stack([moved, np.full(len(ANCHOR), z)]))
    src.add_ROIs(ROIList([ROI(polygons=src_anchor)]), "anchors")
    tgt.add_ROIs(ROIList([ROI(polygons=tgt_anchor)]), "anchors")
    src.add_ROIs(grid_rois(num_planes), "cells")
    return src, tgt


@pytest.mark.parametrize("method", list(TRANSFORM_METHODS))
def test_anchor_methods_exact(method):
    """Exact transforms are recovered from anchors (mean vertex error ≤ 0.5 px)."""
    truth = ANCHOR_TRUTHS[method]
    src, tgt = anchored_pair([truth])
    kwargs = {"order": 2} if method == "polynomial" else {}
    imported = import_quietly(
        tgt, src, method=method, source_label="cells", anchor_label="anchors", **kwargs
    )
    error, good, n = accuracy(imported, src.ROIs["cells"], [truth], (1, VIEW, VIEW))
    print(f"\n[anchors, {method}] {n} ROIs: mean vertex error {error:.2e} px, IoU ok {good:.0%}")
    assert n >= 30
    assert error <= 0.5
    assert error < 1e-6
    assert good == 1.0


def test_anchor_default_source_label_skips_anchor_set():
    """Without source_label the most recent set other than the anchors is imported."""
    src, tgt = anchored_pair([ANCHOR_TRUTHS["euclidean"]])
    imported = import_quietly(tgt, src, method="euclidean", anchor_label="anchors")
    assert len(imported) == len(src.ROIs["cells"])
    assert all("grid" in roi.tags for roi in imported)


def test_anchor_missing_plane_uses_neighbour():
    """A plane without anchors copies the nearest plane's transform, with a warning."""
    t0 = AffineTransform(rotation=0.1, translation=(4, -3))
    t2 = AffineTransform(scale=1.05, translation=(-5, 6))
    src, tgt = anchored_pair([t0, None, t2], num_planes=3)
    with pytest.warns(MissingAnchorWarning, match="plane 1"):
        imported = import_transformed_rois(tgt, src, source_label="cells", anchor_label="anchors")
    # plane 1 is equidistant from planes 0 and 2: the lower one is used
    error, _, n = accuracy(imported, src.ROIs["cells"], [t0, t0, t2], (3, VIEW, VIEW))
    assert n > 0
    assert error < 1e-6


def test_estimate_from_anchors_api():
    truth = SimilarityTransform(scale=0.9, rotation=0.3, translation=(7, 1))
    src = [ROI(polygons=ANCHOR)]
    dst = [ROI(polygons=np.roll(truth(ANCHOR), -2, axis=0))]
    (tf,) = estimate_plane_transforms_from_anchors(src, dst, 1, "similarity")
    np.testing.assert_allclose(tf.params, truth.params, atol=1e-9)
    # piecewise-affine covers the whole frame, beyond the anchors' hull
    (pw,) = estimate_plane_transforms_from_anchors(
        src, dst, 1, "piecewise-affine", frame_shape=(VIEW, VIEW)
    )
    corners = np.array([[0.0, 0.0], [VIEW, 0.0], [VIEW, VIEW], [0.0, VIEW]])
    np.testing.assert_allclose(pw(corners), truth(corners), atol=1e-9)


def test_match_anchor_order():
    ring = ANCHOR + 0.25
    for k in range(len(ring)):
        np.testing.assert_array_equal(match_anchor_order(ANCHOR, np.roll(ring, k, axis=0)), ring)
    with pytest.raises(ValueError, match="8 source and 7 target"):
        match_anchor_order(ANCHOR, ANCHOR[:7])


# --------------------------------------------------------------------------
# ROI properties and clipping
# --------------------------------------------------------------------------


@pytest.mark.parametrize("copy_properties", [True, False])
def test_copy_properties(copy_properties):
    src, tgt = anchored_pair([ANCHOR_TRUTHS["euclidean"]])
    imported = import_quietly(
        tgt,
        src,
        source_label="cells",
        anchor_label="anchors",
        copy_properties=copy_properties,
    )
    source_rois = src.ROIs["cells"]
    assert len(imported) == len(source_rois)
    for new, old in zip(imported, source_rois):
        if copy_properties:
            assert (new.label, new.id, new.tags) == (old.label, old.id, old.tags)
        else:
            assert (new.label, new.id, new.tags) == (None, None, set())
        assert new.im_shape == (1, VIEW, VIEW)


def test_clipping_to_target_frame():
    """ROIs partly outside are cut at the frame edge; ROIs wholly outside are dropped."""
    shift = AffineTransform(translation=(40, 0))
    src, tgt = anchored_pair([shift])
    with pytest.warns(ROIOutsideFrameWarning, match="dropped"):
        imported = import_transformed_rois(
            tgt, src, method="euclidean", source_label="cells", anchor_label="anchors"
        )
    for roi in imported:
        for ring in roi.rings:
            assert ring[:, 0].min() >= 0 and ring[:, 0].max() <= VIEW
            assert ring[:, 1].min() >= 0 and ring[:, 1].max() <= VIEW
    source_rois = src.ROIs["cells"]
    by_id = {roi.id: roi for roi in imported}
    kept, cut = 0, 0
    for roi in source_rois:
        moved = shift(roi.rings[0][:, :2])
        true_mask = polygon_to_mask(moved, (VIEW, VIEW))
        if moved[:, 0].min() >= VIEW:
            assert roi.id not in by_id
            continue
        kept += 1
        got = np.asarray(by_id[roi.id])[0]
        np.testing.assert_array_equal(got, true_mask)  # clipping keeps every in-frame pixel
        cut += moved[:, 0].max() > VIEW
    assert kept < len(source_rois)
    assert cut > 0


def test_clip_rois_to_frame_direct():
    rois = ROIList(
        [
            ROI(polygons=[[-5, 2], [5, 2], [5, 8], [-5, 8]], label="edge"),
            ROI(polygons=[[30, 30], [40, 30], [40, 40]], label="outside"),
            ROI(polygons=[[2, 2], [6, 2], [6, 6]], label="inside", tags={"t"}),
        ]
    )
    with pytest.warns(ROIOutsideFrameWarning, match="'outside'"):
        clipped = clip_rois_to_frame(rois, (20, 20))
    assert [r.label for r in clipped] == ["edge", "inside"]
    assert clipped[0].rings[0][:, 0].min() == 0.0
    assert clipped[1].tags == {"t"}
    np.testing.assert_array_equal(clipped[1].rings[0], rois[2].rings[0])
    assert clipped[0].im_shape == (1, 20, 20)


def test_mask_rois_are_imported():
    """Boolean mask ROIs are carried through their outlines."""
    truth = AffineTransform(translation=(7, -4))
    src, tgt = anchored_pair([truth])
    mask = np.zeros((VIEW, VIEW), bool)
    mask[40:50, 60:66] = True
    src.add_ROIs(ROIList([ROI(mask=mask, label="m")]), "masks")
    (moved,) = import_quietly(
        tgt, src, method="euclidean", source_label="masks", anchor_label="anchors"
    )
    expected = np.zeros((VIEW, VIEW), bool)
    expected[36:46, 67:73] = True
    np.testing.assert_array_equal(np.asarray(moved)[0], expected)


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------


def test_different_plane_counts():
    src, tgt = blank_dataset(2), blank_dataset(1)
    src.add_ROIs(grid_rois(2), "cells")
    with pytest.raises(ValueError, match=r"2 plane.*1"):
        import_transformed_rois(tgt, src, source_label="cells")


def test_mismatched_anchor_points():
    src, tgt = anchored_pair([ANCHOR_TRUTHS["affine"]])
    tgt.add_ROIs(ROIList([ROI(polygons=ANCHOR[:6])]), "anchors")
    with pytest.raises(ValueError, match=r"'anchors'.*8 anchor points.*6"):
        import_transformed_rois(tgt, src, source_label="cells", anchor_label="anchors")


def test_too_few_anchor_points():
    src, tgt = blank_dataset(), blank_dataset()
    tri = np.array([[10.0, 10.0], [50.0, 12.0], [30.0, 60.0]])
    src.add_ROIs(ROIList([ROI(polygons=tri)]), "anchors")
    tgt.add_ROIs(ROIList([ROI(polygons=tri + 1)]), "anchors")
    src.add_ROIs(grid_rois(), "cells")
    with pytest.raises(ValueError, match=r"projective.*at least 4"):
        import_transformed_rois(
            tgt, src, method="projective", source_label="cells", anchor_label="anchors"
        )
    with pytest.raises(ValueError, match=r"polynomial.*at least 10"):
        import_transformed_rois(
            tgt, src, method="polynomial", order=3, source_label="cells", anchor_label="anchors"
        )


@pytest.mark.parametrize("method", ["rigid", "Affine2", "", None, 3])
def test_unknown_method(method):
    src, tgt = anchored_pair([ANCHOR_TRUTHS["affine"]])
    with pytest.raises(ValueError, match=r"known methods.*piecewise-affine"):
        import_transformed_rois(tgt, src, method=method, anchor_label="anchors")


def test_unknown_pre_processing(source):
    src_ds, _ = source
    target = blank_dataset()
    with pytest.raises(ValueError, match="equalize_adapthist"):
        import_transformed_rois(target, src_ds, pre_processing_method="clahe")
    with pytest.raises(ValueError, match="known methods"):
        pre_process_image(np.ones((4, 4)), "sharpen")


def test_missing_labels_and_channels(scene, source):
    src_ds, _ = source
    src, tgt = anchored_pair([ANCHOR_TRUTHS["affine"]])
    with pytest.raises(KeyError, match="nope"):
        import_transformed_rois(tgt, src, source_label="nope", anchor_label="anchors")
    with pytest.raises(KeyError, match="no ROI set labelled 'elsewhere'"):
        import_transformed_rois(tgt, src, source_label="cells", anchor_label="elsewhere")
    with pytest.raises(ValueError, match="replace the anchors"):
        import_transformed_rois(
            tgt, src, source_label="cells", anchor_label="anchors", target_label="anchors"
        )
    target = scene.session([view_transform()], seed=9)
    with pytest.raises(ValueError, match="no channel named 'blue'"):
        import_transformed_rois(target, src_ds, source_label="cells", source_channel="blue")
    with pytest.raises(TypeError, match="unexpected keyword"):
        import_transformed_rois(target, src_ds, source_label="cells", sigma=2)


def test_registration_bad_images():
    with pytest.raises(ValueError, match="at least 16"):
        register_images(np.ones((8, 8)), np.ones((32, 32)))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="constant"):
        register_images(rng.random((32, 32)), np.ones((32, 32)))
    with pytest.raises(ValueError, match="known methods"):
        register_images(rng.random((32, 32)), rng.random((32, 32)), "warp")


def test_pre_process_image_values():
    img = np.array([[np.nan, 1.0], [2.0, 3.0]])
    out = pre_process_image(img, None)
    np.testing.assert_allclose(out, [[0.5, 0.0], [0.5, 1.0]])
    assert set(PRE_PROCESSING_METHODS) == {"equalize_hist", "equalize_adapthist", "gaussian"}
    for method in PRE_PROCESSING_METHODS:
        res = pre_process_image(np.random.default_rng(1).random((32, 32)), method)
        assert res.shape == (32, 32) and np.isfinite(res).all()


# --------------------------------------------------------------------------
# The ImagingDataset method, once wired
# --------------------------------------------------------------------------


def test_dataset_method_stores_result():
    method = getattr(ImagingDataset, "import_transformed_ROIs", None)
    if method is None:
        pytest.skip("ImagingDataset.import_transformed_ROIs is not wired yet")
    expected = [
        "source_dataset",
        "method",
        "source_channel",
        "target_channel",
        "source_label",
        "target_label",
        "anchor_label",
        "copy_properties",
        "pre_processing_method",
        "pre_processing_kwargs",
    ]
    assert list(inspect.signature(method).parameters)[1:11] == expected
    src, tgt = anchored_pair([ANCHOR_TRUTHS["similarity"]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ROIOutsideFrameWarning)
        tgt.import_transformed_ROIs(
            src,
            method="similarity",
            source_label="cells",
            target_label="imported",
            anchor_label="anchors",
        )
    stored = tgt.ROIs["imported"]
    error, _, n = accuracy(stored, src.ROIs["cells"], [ANCHOR_TRUTHS["similarity"]], (1, 128, 128))
    assert n > 0 and error < 1e-6


def test_unrelated_images_warn():
    """Images that do not match give a RegistrationWarning (or an error), never silence."""
    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    a = gaussian_filter(rng.standard_normal((128, 128)), 1.5)
    b = gaussian_filter(rng.standard_normal((128, 128)), 1.5)
    with pytest.warns(RegistrationWarning, match="correlate poorly"):
        register_images(a, b)
