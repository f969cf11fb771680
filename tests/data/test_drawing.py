"""Molecule pictures: valid PNGs of the promised size, element colours, EDM bonds."""

from __future__ import annotations

import matplotlib.colors as mcolors
import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.figure import Figure

from symdiff_jax.data.drawing import ELEMENT_COLORS, draw_molecule_3d, molecule_grid_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WATER = ([8, 1, 1], [[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.2400, 0.9266, 0.0]])
ETHENE = (
    [6, 6, 1, 1, 1, 1],
    [[0.0, 0.0, 0.6695], [0.0, 0.0, -0.6695], [0.0, 0.9289, 1.2321],
     [0.0, -0.9289, 1.2321], [0.0, 0.9289, -1.2321], [0.0, -0.9289, -1.2321]],
)  # fmt: skip
# Two water molecules 6 A apart: one molecule of the batch, two fragments.
TWO_WATERS = (WATER[0] * 2, WATER[1] + [[p[0] + 6.0, p[1], p[2]] for p in WATER[1]])


def padded_batch(mols, width=8):
    x = np.zeros((len(mols), width, 3))
    z = np.zeros((len(mols), width), np.int64)
    for b, (zs, xyz) in enumerate(mols):
        n = len(zs)
        x[b, :n] = np.reshape(xyz, (n, 3))
        z[b, :n] = zs
    return x, z, (z > 0).astype(np.float32)


def awkward_batch():
    """Empty, one atom, disconnected, unsanitisable (close carbons) and ordinary molecules."""
    clump = ([6] * 5, (np.random.RandomState(3).randn(5, 3) * 0.6).tolist())
    return padded_batch([([], []), ([7], [[0.0, 0.0, 0.0]]), TWO_WATERS, clump, ETHENE])


def read_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    return mpimg.imread(path)


@pytest.mark.parametrize("mode", ["3d", "2d"])
def test_grid_png_size_and_awkward_molecules(tmp_path, mode):
    x, z, mask = awkward_batch()  # 5 molecules, 3 columns -> 2 rows
    path = molecule_grid_png(
        tmp_path / "sub" / f"g_{mode}.png", x, z, mask, columns=3, mode=mode, panel_size=120,
        title="samples",
    )  # fmt: skip
    image = read_png(path)
    assert image.shape[:2] == (2 * 120, 3 * 120)
    assert image[..., :3].std() > 0.01  # something was drawn
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [f"g_{mode}.png"]


@pytest.mark.parametrize("mode", ["3d", "2d"])
def test_grid_truncates_and_handles_tiny_batches(tmp_path, mode):
    x, z, mask = padded_batch([WATER] * 20)
    image = read_png(molecule_grid_png(tmp_path / "a.png", x, z, mask, mode=mode, panel_size=50))
    assert image.shape[:2] == (4 * 50, 4 * 50)  # 16 of 20 in 4 columns
    image = read_png(
        molecule_grid_png(tmp_path / "b.png", x, z, mask, mode=mode, max_molecules=6, panel_size=50)
    )
    assert image.shape[:2] == (2 * 50, 4 * 50)
    one = read_png(molecule_grid_png(tmp_path / "c.png", x[0], z[0], mode=mode, panel_size=50))
    assert one.shape[:2] == (50, 50)  # a single [N, 3] molecule, columns shrink to 1
    empty = molecule_grid_png(tmp_path / "d.png", x[:0], z[:0], mask[:0], mode=mode, panel_size=50)
    assert read_png(empty).shape[:2] == (50, 50)


def colour_fraction(image, hex_colour, tol=0.06):
    rgb = np.asarray(mcolors.to_rgb(hex_colour))
    return float(np.mean(np.all(np.abs(image[..., :3] - rgb) < tol, axis=-1)))


def test_3d_atoms_are_coloured_by_element(tmp_path):
    """Oxygen panels contain red pixels and no blue; nitrogen panels the reverse."""
    oxygen = padded_batch([([8], [[0.0, 0.0, 0.0]])])
    nitrogen = padded_batch([([7], [[0.0, 0.0, 0.0]])])
    red = read_png(molecule_grid_png(tmp_path / "o.png", *oxygen, panel_size=150))
    blue = read_png(molecule_grid_png(tmp_path / "n.png", *nitrogen, panel_size=150))
    assert colour_fraction(red, ELEMENT_COLORS[8]) > 0.002
    assert colour_fraction(red, ELEMENT_COLORS[7]) == 0.0
    assert colour_fraction(blue, ELEMENT_COLORS[7]) > 0.002
    assert colour_fraction(blue, ELEMENT_COLORS[8]) == 0.0


def test_cpk_colours():
    named = {1: "white", 6: "dark grey", 7: "blue", 8: "red", 9: "green"}
    rgb = {z: np.asarray(mcolors.to_rgb(ELEMENT_COLORS[z])) for z in named}
    assert rgb[1].min() > 0.95  # white
    assert rgb[6].max() < 0.35 and np.ptp(rgb[6]) < 0.05  # dark grey
    assert np.argmax(rgb[7]) == 2 and np.argmax(rgb[8]) == 0 and np.argmax(rgb[9]) == 1


def test_draw_molecule_3d_draws_one_line_per_bond():
    fig = Figure()
    cases = [(WATER, 2, [1.5, 1.5]), (ETHENE, 5, [3.0] + [1.5] * 4), (TWO_WATERS, 4, [1.5] * 4)]
    for (zs, xyz), n_bonds, widths in cases:
        ax = fig.add_subplot(projection="3d")
        draw_molecule_3d(ax, np.array(xyz), np.array(zs))
        assert len(ax.lines) == n_bonds
        assert sorted(line.get_linewidth() for line in ax.lines) == sorted(widths)
        assert len(ax.collections) == len(zs)  # one marker per atom, in atom order
        offsets = [np.ravel(c._offsets3d) for c in ax.collections]
        np.testing.assert_allclose(np.stack(offsets), np.array(xyz), atol=1e-12)
    ax = fig.add_subplot(projection="3d")
    draw_molecule_3d(ax, np.zeros((4, 3)), np.zeros(4, int))  # all padding
    assert len(ax.lines) == 0 and len(ax.collections) == 0
    ax = fig.add_subplot(projection="3d")
    draw_molecule_3d(ax, np.array(WATER[1]), np.array(WATER[0]), bonds=False)
    assert len(ax.lines) == 0


def test_bad_arguments(tmp_path):
    x, z, mask = padded_batch([WATER])
    with pytest.raises(ValueError, match="mode must be one of"):
        molecule_grid_png(tmp_path / "a.png", x, z, mask, mode="4d")
    with pytest.raises(ValueError, match="columns must be a positive integer"):
        molecule_grid_png(tmp_path / "a.png", x, z, mask, columns=0)
    with pytest.raises(ValueError, match="draws one molecule"):
        draw_molecule_3d(Figure().add_subplot(projection="3d"), x, z)
    z_bad = z.copy()
    z_bad[0, 1] = 2
    with pytest.raises(ValueError, match="molecule 0, atom 1 has atomic number 2"):
        molecule_grid_png(tmp_path / "a.png", x, z_bad, mask)
    assert not (tmp_path / "a.png").exists()


def test_blown_up_sample_is_flagged_and_panels_share_one_scale():
    """A sample 200x too large gets a red "blown up" title; the others keep one scale."""
    from symdiff_jax.data.drawing import BLOWUP_COLOR, molecule_extents, molecule_grid_figure

    blown = (ETHENE[0], (np.asarray(ETHENE[1]) * 200.0).tolist())
    nan = (WATER[0], [[np.nan, 0.0, 0.0]] + WATER[1][1:])
    x, z, mask = padded_batch([WATER, ETHENE, blown, nan, TWO_WATERS])
    extents = molecule_extents(x, mask)
    fig = molecule_grid_figure(x, z, mask, columns=5, panel_size=80)
    titles = [ax.get_title() for ax in fig.axes]
    flagged = [i for i, ax in enumerate(fig.axes) if "blown up" in ax.get_title()]
    assert flagged == [2, 3], titles
    assert f"|x| = {extents[2]:.0f} A" in titles[2] and extents[2] > 200
    red = mcolors.to_rgba(BLOWUP_COLOR)
    assert [mcolors.to_rgba(fig.axes[i].title.get_color()) == red for i in range(5)] == [
        False, False, True, True, False,
    ]  # fmt: skip
    lims = np.asarray([np.reshape(ax.get_w_lims(), (3, 2)) for ax in fig.axes])
    widths = np.round(lims[..., 1] - lims[..., 0], 6)
    assert len(np.unique(widths)) == 1, widths  # one box width in every panel, every axis
    # The shared box holds the largest well-behaved molecule (two waters 6 A apart).
    assert widths[0, 0] > 2 * extents[4] and extents[4] < 15


def test_3d_grid_draws_exactly_the_bonds_the_metrics_infer():
    from symdiff_jax.data.drawing import molecule_grid_figure
    from symdiff_jax.metrics.stability import bond_orders

    rng = np.random.RandomState(0)
    noisy = (ETHENE[0], (np.asarray(ETHENE[1]) + 0.15 * rng.randn(6, 3)).tolist())
    x, z, mask = padded_batch([WATER, ETHENE, TWO_WATERS, noisy])
    fig = molecule_grid_figure(x, z, mask, columns=4, panel_size=60)
    orders = bond_orders(x, z, mask)
    expected = [int(np.count_nonzero(np.triu(o, 1))) for o in orders]
    assert [len(ax.lines) for ax in fig.axes] == expected
    assert expected[:3] == [2, 5, 4]


def test_3d_bonds_show_between_their_atoms():
    """At the projected midpoint of every bond the picture has the bond's own colour: no atom
    marker covers it (a grid at the default panel size, one scale set by two waters 6 A apart)."""
    from mpl_toolkits.mplot3d import proj3d

    from symdiff_jax.data.drawing import molecule_grid_figure

    x, z, mask = padded_batch([WATER, ETHENE, TWO_WATERS])
    fig = molecule_grid_figure(x, z, mask, columns=3)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3] / 255.0
    height = image.shape[0]
    checked = 0
    for ax in fig.axes:
        for line in ax.lines:
            mid = np.mean(line.get_data_3d(), axis=1)
            x2, y2, _ = proj3d.proj_transform(*mid, ax.get_proj())
            col, row = ax.transData.transform((x2, y2))
            r, c = int(round(height - row)), int(round(col))
            patch = image[r - 1 : r + 2, c - 1 : c + 2].reshape(-1, 3)
            want = np.asarray(mcolors.to_rgb(line.get_color()))
            assert np.abs(patch - want).max(-1).min() < 0.08, (ax.get_title(), patch, want)
            checked += 1
    assert checked == 2 + 5 + 4
