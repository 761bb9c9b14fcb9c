import numpy as np
import pytest
import torch

from ldmind_ref import liif
from ldmind_ref.core import coords


def _size(h, w):
    return torch.tensor([h, w], dtype=torch.float32)


def _border_rows(H, W):
    """First, second and last rows of an H x W grid plus the first/last column (corners included)."""
    rows = [coords.grid_coords(H, W, r, r + 1) for r in (0, min(1, H - 1), H - 1)]
    cols = [coords.grid_coords(H, W, 0, H, c, c + 1) for c in (0, W - 1)] if H * 2 <= 20000 else []
    return torch.from_numpy(np.concatenate(rows + cols))[None]


@pytest.mark.parametrize("h,w", [(1, 1), (5, 7), (3, 11), (16, 9)])
@pytest.mark.parametrize("scale", [1.0, 1.3, 2.0, 3.7, 17.0, 200.0])
def test_ensemble_weights_sum_to_one_at_borders(h, w, scale):
    H, W = coords.output_size(h, w, scale=scale)
    coord = _border_rows(H, W)
    _, rel, weights = liif.neighbours(coord, _size(h, w))
    assert torch.isfinite(weights).all() and torch.isfinite(rel).all()
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(0), torch.ones_like(weights[0]), rtol=0, atol=1e-6)


def test_corners_exact():
    """The four image corners: every neighbour collapses onto the corner cell, weights stay 1/4 each."""
    c = torch.tensor([[[-1 + 1e-7, -1 + 1e-7], [1 - 1e-7, 1 - 1e-7], [-0.999, 0.999]]])
    idx, _, weights = liif.neighbours(c, _size(4, 6))
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights.sum(0), torch.ones(1, 3))
    assert (idx[:, 0, 0] == 0).all() and (idx[:, 0, 1] == torch.tensor([3.0, 5.0])).all()


def test_nearest_cell_and_relative_coordinate():
    """A query at a latent cell centre: the (-y, -x) shift stays in the cell (the tie-break
    shift is +1e-6), the (+y, +x) one lands in the next cell; rel is scaled by (h, w) and the
    own cell takes all the weight."""
    h, w = 4, 4
    centre = torch.tensor([[[-1 + 3 / 4, -1 + 3 / 4]]])  # centre of cell (1, 1)
    idx, rel, weights = liif.neighbours(centre, _size(h, w))
    assert idx[0, 0, 0].tolist() == [1.0, 1.0] and idx[3, 0, 0].tolist() == [2.0, 2.0]
    torch.testing.assert_close(rel[0, 0, 0], torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(rel[3, 0, 0], torch.tensor([-2.0, -2.0]), atol=1e-5, rtol=0)
    assert weights[0, 0, 0] == pytest.approx(1.0, abs=1e-5)


def _head(C=6, seed=0):
    torch.manual_seed(seed)
    return liif.LIIFHead(C, (16, 16)).eval()


def test_chunked_equals_unchunked_exactly():
    head = _head()
    feats = torch.randn(2, 6, 5, 7)
    full = liif.render(head, feats, 23, 31, chunk=10 ** 9)
    for chunk in (1, 7, 100, 23 * 31 - 1):
        assert torch.equal(liif.render(head, feats, 23, 31, chunk=chunk), full), chunk


def test_constant_features_render_constant_image():
    """If f_theta ignores coordinates, a constant feature map must give a constant image at
    any size: the ensemble weights are exactly a partition of unity, borders included."""
    head = _head()
    with torch.no_grad():
        head.layers[0].weight[:, -4:] = 0  # rel coord and cell inputs
    feats = torch.full((1, 6, 3, 5), 0.37)
    expected = head(torch.cat([torch.full((6,), 0.37), torch.zeros(4)]))
    for H, W in ((3, 5), (7, 4), (61, 97)):
        img = liif.render(head, feats, H, W)
        torch.testing.assert_close(img, expected.view(1, 3, 1, 1).expand(1, 3, H, W), rtol=0, atol=1e-6)


def _manual_query(head, feats, coord, cell):
    """The LIIF ensemble written as a plain loop over the 4 neighbours (the border rule of
    the module doc included: an axis whose two neighbours are one clamped cell counts 1)."""
    h, w = feats.shape[2], feats.shape[3]
    preds, sides, rows, cols = [], [], [], []
    for vy, vx in liif._OFFSETS:
        c = (coord + torch.tensor([vy / h, vx / w]) + 1e-6).clamp(-1 + 1e-6, 1 - 1e-6)
        iy = torch.floor((c[..., 0] + 1) * h / 2).clamp(0, h - 1).long()
        ix = torch.floor((c[..., 1] + 1) * w / 2).clamp(0, w - 1).long()
        f = feats[0, :, iy[0], ix[0]].T[None]
        qc = torch.stack([-1 + (2 * iy + 1) / h, -1 + (2 * ix + 1) / w], -1)
        rel = (coord - qc) * torch.tensor([h, w])
        preds.append(head(torch.cat([f, rel, cell * torch.tensor([h, w])], -1)))
        sides.append(rel.abs())
        rows.append(iy)
        cols.append(ix)
    same_row, same_col = rows[0] == rows[3], cols[0] == cols[3]
    areas = [torch.where(same_row, 1.0, s[..., 0]) * torch.where(same_col, 1.0, s[..., 1]) + 1e-9 for s in sides]
    tot = sum(areas)
    areas = areas[::-1]  # diagonal swap
    return sum(p * (a / tot).unsqueeze(-1) for p, a in zip(preds, areas))


def test_border_queries_match_the_manual_ensemble():
    """Values, not just finiteness: every border pixel at several scales equals the loop."""
    head = _head(seed=2)
    feats = torch.randn(1, 6, 5, 3)
    for scale in (1.0, 1.3, 3.0, 4.0, 17.0):
        H, W = coords.output_size(5, 3, scale=scale)
        coord = _border_rows(H, W)
        cell = torch.from_numpy(coords.cells(H, W, 1))[None].expand(1, coord.shape[1], 2)
        got = liif.query(head, feats, coord, cell)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, _manual_query(head, feats, coord, cell), rtol=0, atol=2e-6)


def test_one_x_render_is_each_cells_own_prediction():
    """At 1x every output pixel centre is a latent cell centre: the blend gives that cell all
    the weight -- on the last row and column too, where the original LIIF code falls back to a
    flat average of the four predictions (the exact tie of the issue)."""
    head = _head(seed=5)
    with torch.no_grad():
        head.layers[0].weight[:, -4:] = 0          # the prediction depends on the feature only
    feats = torch.randn(1, 6, 5, 7)
    img = liif.render(head, feats, 5, 7)
    own = head(torch.cat([feats[0].permute(1, 2, 0), torch.zeros(5, 7, 4)], -1)).permute(2, 0, 1)[None]
    torch.testing.assert_close(img, own, rtol=0, atol=1e-6)


def test_tie_at_the_last_centre_does_not_depend_on_rounding():
    """Queries a rounding error either side of the last row's centre blend like the centre
    itself: the result is continuous there (it jumped to a flat average exactly at it)."""
    head = _head(seed=6)
    feats = torch.randn(1, 6, 4, 6)
    y = 1 - 1 / 4                                   # centre of the last latent row
    x = torch.tensor([-0.9, -0.37, 0.2, 0.61])
    base = torch.stack([torch.full_like(x, y), x], -1)[None]
    cell = torch.full_like(base, 0.5)
    ref = liif.query(head, feats, base, cell)
    for dy in (-1e-7, -3e-8, 3e-8, 1e-7):
        moved = base.clone()
        moved[..., 0] = torch.tensor(y + dy, dtype=torch.float32)
        torch.testing.assert_close(liif.query(head, feats, moved, cell), ref, rtol=0, atol=1e-5)


def test_eps_shift_picks_the_cell_just_before_a_border():
    """EPS_SHIFT (1e-6) breaks exact ties towards the next cell and nothing more: with h = 4
    the +y neighbour of a query 5e-6 below the centre of cell 1 is still cell 1 (its shifted
    coordinate is 4e-6 before the border at 0), exactly at the centre it is cell 2, and 5e-7
    below the centre the shift carries it over the border, to cell 2."""
    size = _size(4, 4)
    for dy, plus, minus in ((-5e-6, 1.0, 0.0), (0.0, 2.0, 1.0), (-5e-7, 2.0, 1.0), (-2e-6, 1.0, 0.0)):
        q = torch.tensor([[[-0.25 + dy, 0.3]]])
        idx, _, _ = liif.neighbours(q, size)
        assert idx[3, 0, 0, 0].item() == plus and idx[0, 0, 0, 0].item() == minus, (dy, idx[:, 0, 0, 0])
        idx, _, _ = liif.neighbours(q.flip(-1), size)   # the same on the x axis
        assert idx[3, 0, 0, 1].item() == plus and idx[0, 0, 0, 1].item() == minus


def test_interior_matches_manual_ensemble():
    """Cross-check the vectorised query with a straightforward loop over the 4 neighbours."""
    head = _head(seed=4)
    h, w = 4, 5
    feats = torch.randn(1, 6, h, w)
    coord = torch.tensor([[[0.13, -0.41], [-0.6, 0.77]]])
    cell = torch.tensor([[[0.05, 0.05], [0.05, 0.05]]])
    got = liif.query(head, feats, coord, cell)
    torch.testing.assert_close(got, _manual_query(head, feats, coord, cell))


def test_output_size_rounding_and_errors():
    assert coords.output_size(13, 17, scale=1.5) == (20, 26)  # 19.5 rounds up
    assert coords.output_size(10, 10, size=(30, 20)) == (20, 30)
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            coords.output_size(10, 10, scale=bad)
    with pytest.raises(ValueError):
        coords.output_size(10, 10)


@pytest.mark.parametrize("h,w,scale,want", [
    (5, 5, 2.5, (13, 13)),      # 12.5: half up gives 13, half to even 12, truncation 12
    (5, 1, 2.5, (13, 3)),       # and 2.5 -> 3 (half to even: 2)
    (1, 3, 0.5, (1, 2)),        # 0.5 -> 1 (even: 0), 1.5 -> 2
    (7, 9, 0.5, (4, 5)),        # 3.5 -> 4 (even: 4), 4.5 -> 5 (even: 4)
    (3, 5, 1.5, (5, 8)),        # 4.5 -> 5 (even: 4), 7.5 -> 8 (even: 8)
    (4, 6, 1.25, (5, 8)),       # 5.0 exactly, 7.5 -> 8
    (10, 10, 1.04, (10, 10)),   # 10.4 -> 10 (not ceil)
])
def test_output_size_halves_round_up(h, w, scale, want):
    """floor(s * n + 0.5): exact halves go up, which half-to-even (Python's round) and
    truncation do not (hand-computed)."""
    assert coords.output_size(h, w, scale=scale) == want


def test_cells_are_two_over_height_then_width():
    c = coords.cells(4, 10, 3)
    assert c.shape == (3, 2) and c.dtype == np.float32
    np.testing.assert_array_equal(c, np.array([[0.5, 0.2]] * 3, dtype=np.float32))   # (2/H, 2/W)
    np.testing.assert_array_equal(coords.cells(8, 1, 1), np.array([[0.25, 2.0]], dtype=np.float32))


def test_grid_coords_convention():
    c = coords.grid_coords(2, 4)
    assert c.shape == (8, 2)
    np.testing.assert_allclose(c[0], [-0.5, -0.75])
    np.testing.assert_allclose(c[-1], [0.5, 0.75])
    np.testing.assert_array_equal(coords.grid_coords(6, 5, 2, 4), coords.grid_coords(6, 5)[10:20])
