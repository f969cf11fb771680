"""Pictures of molecules: grids of 3D point clouds with bonds, or 2D structure diagrams.

Two views of a padded batch (`positions [B, N, 3]` Angstrom, `atomic_numbers [B, N]`,
`mask [B, N]`):

- `mode="3d"`: one matplotlib 3D panel per molecule; atoms are spheres coloured by element
  (CPK / Jmol colours: H white with a grey edge, C dark grey, N blue, O red, F green, ...),
  sized by element, and bonds are the ones EDM's distance rule finds (the graph the
  stability metric judges), drawn as lines whose width grows with the bond order. Atoms
  and bonds are painted far to near (orthographic view) and the markers are small, so a
  bond shows between its two atoms. All panels share one scale (the box width in Angstrom is printed above the grid, and each
  panel's title gives its extent r); a molecule with non-finite coordinates or r above
  `BLOWUP_ANGSTROM` is flagged with a red "blown up: |x| = ... A" title.
- `mode="2d"`: RDKit depictions (`Draw.MolsToGridImage`) of the largest connected fragment
  of each molecule, hydrogens folded into their heavy atoms, with its SMILES as legend;
  molecules RDKit cannot sanitise are drawn unsanitised with the legend `invalid`, and a
  molecule without atoms as a `*` placeholder.

Figures are made with `matplotlib.figure.Figure` and the Agg canvas directly, so nothing
opens a window and pyplot's global state (and backend) is left alone. Images are written
atomically (temporary file + rename).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from symdiff_jax.data.atomic import atomic_write
from symdiff_jax.data.writers import molecules_to_rdkit
from symdiff_jax.metrics.bond_tables import ELEMENT_SYMBOLS
from symdiff_jax.metrics.stability import as_molecule_batch, bond_orders_checked

#: Atom colours by atomic number (Jmol's CPK scheme; carbon darker so it shows on white).
ELEMENT_COLORS: dict[int, str] = {
    1: "#FFFFFF", 5: "#FFB5B5", 6: "#404040", 7: "#3050F8", 8: "#FF0D0D", 9: "#2DB82D",
    13: "#BFA6A6", 14: "#F0C8A0", 15: "#FF8000", 16: "#FFFF30", 17: "#1FF01F",
    33: "#BD80E3", 35: "#A62929", 53: "#940094", 80: "#B8B8D0", 83: "#9E4FB5",
}  # fmt: skip
#: Colour of atoms whose element is not in `ELEMENT_COLORS`.
DEFAULT_COLOR: str = "#FF1493"
#: Edge colour of every atom (makes white hydrogens visible).
EDGE_COLOR: str = "#7F7F7F"
#: Marker area (points^2) of hydrogens and of heavier atoms in the 3D view: small enough
#: that a bond shows between its two atoms.
HYDROGEN_SIZE: float = 22.0
HEAVY_SIZE: float = 60.0
#: Colour and width (points, per unit of bond order) of the bond lines.
BOND_COLOR: str = "#5A5A5A"
BOND_WIDTH: float = 1.5
#: Magnification of the 3D box inside its panel (matplotlib leaves wide margins at 1).
BOX_ZOOM: float = 1.35
MODES: tuple[str, ...] = ("3d", "2d")
#: A molecule whose atoms lie further than this from its centre (Angstrom), or that has
#: non-finite coordinates, is flagged "blown up" in red (QM9 molecules reach about 6 A).
BLOWUP_ANGSTROM: float = 15.0
BLOWUP_COLOR: str = "#D00000"


def molecule_extents(positions: Any, mask: Any) -> np.ndarray:
    """`[B]` largest distance (Angstrom) of a real atom from its molecule's centre of mass.

    Args:
      positions: `[B, N, 3]` coordinates in Angstrom (non-finite entries give `inf`).
      mask: `[B, N]`, nonzero for real atoms.

    Returns:
      `max_i |x_i - mean_j x_j|` over the real atoms of each molecule (unit masses); 0 for
      a molecule without atoms, `inf` when a real atom has a non-finite coordinate.
    """
    x = np.asarray(positions, np.float64)
    m = np.asarray(mask) > 0
    n = np.maximum(m.sum(-1, keepdims=True), 1)
    finite = np.isfinite(x).all(-1) | ~m
    xs = np.where(m[..., None] & finite[..., None], x, 0.0)
    centre = xs.sum(-2, keepdims=True) / n[..., None]
    r = np.where(m, np.linalg.norm(xs - centre, axis=-1), 0.0).max(-1, initial=0.0)
    return np.where(finite.all(-1), r, np.inf)


def is_blown_up(extent: Any, limit: float = BLOWUP_ANGSTROM) -> np.ndarray:
    """Whether molecule extents (`molecule_extents`) are non-finite or exceed `limit` A."""
    e = np.asarray(extent, np.float64)
    return ~np.isfinite(e) | (e > limit)


def atom_colors(atomic_numbers: Any) -> list[str]:
    """Colour (hex string) of each atomic number, `DEFAULT_COLOR` for unlisted elements."""
    return [ELEMENT_COLORS.get(int(z), DEFAULT_COLOR) for z in np.ravel(atomic_numbers)]


def view_direction(elev: float, azim: float) -> np.ndarray:
    """Unit vector from a 3D axes' centre towards its viewer (matplotlib's `elev`/`azim`, degrees).

    A point's dot product with it is its depth: larger is nearer the viewer.
    """
    e, a = np.deg2rad(elev), np.deg2rad(azim)
    return np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])


def draw_molecule_3d(
    ax: Any,
    positions: Any,
    atomic_numbers: Any,
    mask: Any = None,
    *,
    bonds: bool = True,
    title: str | None = None,
    half_width: float | None = None,
    title_color: str = "black",
) -> Any:
    """Draws one molecule on a matplotlib 3D axes (`projection="3d"`).

    Args:
      ax: a `mpl_toolkits.mplot3d.Axes3D`, e.g. `fig.add_subplot(projection="3d")`.
      positions: `[N, 3]` coordinates in Angstrom.
      atomic_numbers: `[N]` atomic numbers (0 = padding).
      mask: `[N]`, nonzero for real atoms; None: atomic number > 0.
      bonds: draw the bonds EDM's rule finds (`symdiff_jax.metrics.bond_orders`), one
        line per bond, line width 1.5 x order.
      title: optional axes title.
      half_width: half the side (Angstrom) of the cubic box drawn around the molecule's
        centre; None: 1.1 x the molecule's own half-size (at least 1.1 A). Give every panel
        of a grid the same value and they share one scale.
      title_color: colour of the title (red for a flagged molecule).

    Returns:
      `ax`, with one scatter collection per atom, in atom order, and one line per bond in
      `ax.lines`, each artist's zorder its depth towards the viewer; axes hidden and a cubic box around the molecule so
      lengths are not distorted (limits from `half_width`).

    Raises:
      ValueError: shapes other than `[N, 3]` / `[N]`, or elements outside the bond tables.
    """
    x = np.asarray(positions)
    if x.ndim != 2:
        raise ValueError(
            f"draw_molecule_3d draws one molecule: positions must be [N, 3]; got shape "
            f"{x.shape}. Use molecule_grid_png for a batch."
        )
    xb, zb, mb = as_molecule_batch(x, atomic_numbers, mask)
    keep = np.flatnonzero(mb[0])
    pts = xb[0, keep].astype(np.float64)
    z = zb[0, keep]
    # Painter's order: each atom and bond is one artist whose zorder is its depth towards
    # the viewer (orthographic view), so a bond covers the half of the farther atom it
    # enters and is covered by the nearer one, and the part between the atoms shows.
    ax.computed_zorder = False
    ax.set_proj_type("ortho")
    depth = pts @ view_direction(ax.elev, ax.azim)
    if bonds and len(keep) > 1:
        orders = bond_orders_checked(xb, zb, mb, False)[0][np.ix_(keep, keep)]
        for i, j in zip(*np.nonzero(np.triu(orders, 1)), strict=True):
            seg = pts[[i, j]]
            ax.plot(
                seg[:, 0],
                seg[:, 1],
                seg[:, 2],
                color=BOND_COLOR,
                linewidth=BOND_WIDTH * int(orders[i, j]),
                solid_capstyle="butt",
                zorder=float(depth[i] + depth[j]) / 2,
            )
    for i in range(len(keep)):
        ax.scatter(
            pts[i, :1],
            pts[i, 1:2],
            pts[i, 2:],
            c=atom_colors(z[i : i + 1]),
            s=HYDROGEN_SIZE if z[i] == 1 else HEAVY_SIZE,
            edgecolors=EDGE_COLOR,
            linewidths=0.6,
            depthshade=False,
            alpha=1.0,
            zorder=float(depth[i]),
        )
    if len(keep):
        centre = (pts.max(0) + pts.min(0)) / 2
        half = max(float((pts.max(0) - pts.min(0)).max()) / 2, 1.0) * 1.1
    else:
        centre, half = np.zeros(3), 1.0
    if half_width is not None:
        half = float(half_width)
    if not len(keep):
        ax.text2D(0.5, 0.5, "(no atoms)", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_zlim(centre[2] - half, centre[2] + half)
    ax.set_box_aspect((1, 1, 1), zoom=BOX_ZOOM)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title, fontsize=9, color=title_color)
    return ax


def _formula(z: np.ndarray) -> str:
    """Hill formula (C first, H second, the rest alphabetical) of atomic numbers `z`."""
    symbols = [ELEMENT_SYMBOLS.get(int(v), f"Z{int(v)}") for v in z]
    counts = {s: symbols.count(s) for s in set(symbols)}
    order = [s for s in ("C", "H") if s in counts and "C" in counts]
    order += sorted(s for s in counts if s not in order)
    return "".join(f"{s}{counts[s] if counts[s] > 1 else ''}" for s in order) or "empty"


def _grid_shape(count: int, columns: int) -> tuple[int, int]:
    cols = max(1, min(columns, count))
    return max(1, math.ceil(count / cols)), cols


def grid_half_width(extents: Any) -> float:
    """The shared half-width (Angstrom) of the panels: 1.1 x the largest extent that is not
    blown up (`is_blown_up`), at least 1.1 A."""
    e = np.asarray(extents, np.float64)
    ok = e[~is_blown_up(e)]
    return 1.1 * max(float(ok.max()) if ok.size else 0.0, 1.0)


def panel_title(index: int, atomic_numbers: np.ndarray, extent: float) -> tuple[str, bool]:
    """`("<index>: <formula>, r <extent> A", False)`, or the blown-up label and True."""
    if not np.isfinite(extent):
        return f"{index}: blown up: non-finite |x|", True
    if is_blown_up(extent):
        return f"{index}: blown up: |x| = {extent:.0f} A", True
    return f"{index}: {_formula(atomic_numbers)}, r {extent:.1f} A", False


def _figure_3d(x, z, m, rows, cols, panel_size, title, extents):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(cols * panel_size / dpi, rows * panel_size / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    half = grid_half_width(extents)
    for b in range(x.shape[0]):
        ax = fig.add_subplot(rows, cols, b + 1, projection="3d")
        label, blown = panel_title(b, z[b][m[b]], float(extents[b]))
        draw_molecule_3d(
            ax,
            x[b],
            z[b],
            m[b],
            title=label,
            half_width=half,
            title_color=BLOWUP_COLOR if blown else "black",
        )
    if x.shape[0] == 0:
        fig.text(0.5, 0.5, "(no molecules)", ha="center", va="center")
    height = rows * panel_size
    top_px = 24 + 28  # room for panel titles and the figure title with the scale
    scale = f"one scale: box {2 * half:.1f} A wide; r = largest atom distance from the centre"
    fig.suptitle(
        scale if title is None else f"{title}\n{scale}", y=1 - 4 / height, va="top", fontsize=8
    )
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=max(0.5, 1 - top_px / height))
    return fig


def _prepared(positions, atomic_numbers, mask, max_molecules, columns):
    """The batch to draw (non-finite atoms masked out), its extents and the grid shape."""
    raw = np.asarray(positions)
    raw = raw if np.issubdtype(raw.dtype, np.floating) else raw.astype(np.float64)
    real = np.asarray(atomic_numbers) > 0 if mask is None else np.asarray(mask) > 0
    finite = np.isfinite(raw).all(-1)
    x, z, m = as_molecule_batch(np.where(finite[..., None], raw, 0), atomic_numbers, real & finite)
    extents = molecule_extents(raw.reshape(x.shape), real.reshape(m.shape))[:max_molecules]
    x, z, m = x[:max_molecules], z[:max_molecules], m[:max_molecules]
    return x, z, m, extents, _grid_shape(x.shape[0], int(columns))


def molecule_grid_figure(
    positions: Any,
    atomic_numbers: Any,
    mask: Any = None,
    *,
    max_molecules: int = 16,
    columns: int = 4,
    title: str | None = None,
    panel_size: int = 300,
) -> Any:
    """The 3D grid of `molecule_grid_png(mode="3d")` as a matplotlib `Figure` (Agg canvas).

    Every panel has the same cubic limits (`grid_half_width` of the extents that are not
    blown up), a title `index: formula, r <extent> A` or, in red, `index: blown up: |x| =
    <extent> A`; the figure title gives the box width. Non-finite atoms are not drawn.
    Arguments as `molecule_grid_png`.
    """
    x, z, m, extents, (rows, cols) = _prepared(
        positions, atomic_numbers, mask, max_molecules, columns
    )
    return _figure_3d(x, z, m, rows, cols, int(panel_size), title, extents)


def _grid_2d(path, x, z, m, rows, cols, panel_size, title) -> str:
    from rdkit import Chem
    from rdkit.Chem import Draw

    from symdiff_jax.metrics.rdkit_metrics import quiet_rdkit

    _blocker = quiet_rdkit()  # noqa: F841 - active until it goes out of scope
    mols, legends = [], []
    for b, mol in enumerate(molecules_to_rdkit(x, z, m)):
        if mol.GetBoolProp("sanitized") and mol.GetNumAtoms():
            frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
            frag = max(frags, key=lambda f: f.GetNumAtoms())
            try:
                frag = Chem.RemoveHs(frag)
                legend = f"{b}: {Chem.MolToSmiles(frag)}"
            except (ValueError, RuntimeError):
                legend = f"{b}: {Chem.MolToSmiles(frag)}"
        elif mol.GetNumAtoms():
            frag = Chem.Mol(mol)
            legend = f"{b}: invalid"
        else:  # RDKit draws nothing, not even the legend, for an empty molecule
            frag = Chem.MolFromSmiles("*")
            legend = f"{b}: (no atoms)"
        frag.RemoveAllConformers()
        mols.append(frag)
        legends.append(legend)
    if not mols:
        mols, legends = [Chem.MolFromSmiles("*")], ["(no molecules)"]
    if title is not None:
        legends[0] = f"{title} | {legends[0]}"
    options = Draw.MolDrawOptions()
    options.prepareMolsBeforeDrawing = False
    prepared = []
    for mol in mols:
        try:
            prepared.append(Draw.rdMolDraw2D.PrepareMolForDrawing(mol, kekulize=True))
        except (ValueError, RuntimeError):
            prepared.append(Draw.rdMolDraw2D.PrepareMolForDrawing(mol, kekulize=False))
    image = Draw.MolsToGridImage(
        prepared,
        molsPerRow=cols,
        subImgSize=(panel_size, panel_size),
        legends=legends,
        drawOptions=options,
        returnPNG=True,
    )
    data = image if isinstance(image, bytes) else getattr(image, "data", image)

    def write(tmp: str) -> None:
        if isinstance(data, bytes):
            with open(tmp, "wb") as f:
                f.write(data)
        else:  # a PIL image (older RDKit ignores returnPNG outside notebooks)
            data.save(tmp, format="PNG")

    return atomic_write(path, write, ".png")


def molecule_grid_png(
    path: str | os.PathLike,
    positions: Any,
    atomic_numbers: Any,
    mask: Any = None,
    *,
    max_molecules: int = 16,
    columns: int = 4,
    mode: str = "3d",
    title: str | None = None,
    panel_size: int = 300,
) -> str:
    """Draws the first molecules of a batch as a grid and saves it as a PNG.

    Args:
      path: destination `.png` (parent directories are created; written atomically).
      positions: `[B, N, 3]` (or `[N, 3]`) coordinates in Angstrom (numpy or JAX).
      atomic_numbers: `[B, N]` (or `[N]`) atomic numbers, 0 = padding.
      mask: `[B, N]`, nonzero for real atoms; None: atomic number > 0.
      max_molecules: draw only the first `max_molecules` molecules.
      columns: panels per row (fewer when fewer molecules are drawn).
      mode: "3d" (matplotlib 3D scatter + EDM bonds on one shared scale, panel titles
        `index: formula, r <extent> A`, blow-ups flagged in red; `molecule_grid_figure`) or
        "2d" (RDKit depiction of the largest fragment, legends `index: SMILES`).
      title: optional figure title (3d: above the grid; 2d: prefixed to the first legend).
      panel_size: panel side in pixels.

    Returns:
      The path written. The image is `rows * panel_size` pixels high and
      `cols * panel_size` wide, with `cols = min(columns, count)`,
      `rows = ceil(count / cols)`, `count = min(B, max_molecules)` (one blank panel for an
      empty batch).

    Raises:
      ValueError: unknown `mode`, non-positive `max_molecules` / `columns` / `panel_size`,
        or a bad batch (shapes, elements outside the bond tables).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
    for name, value in (
        ("max_molecules", max_molecules),
        ("columns", columns),
        ("panel_size", panel_size),
    ):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    x, z, m, extents, (rows, cols) = _prepared(
        positions, atomic_numbers, mask, max_molecules, columns
    )
    path = Path(path).expanduser()
    if mode == "2d":
        return _grid_2d(path, x, z, m, rows, cols, int(panel_size), title)
    fig = _figure_3d(x, z, m, rows, cols, int(panel_size), title, extents)

    def write(tmp: str) -> None:
        fig.savefig(tmp, format="png", dpi=fig.dpi)

    return atomic_write(path, write, ".png")


__all__ = [
    "BLOWUP_ANGSTROM",
    "ELEMENT_COLORS",
    "atom_colors",
    "draw_molecule_3d",
    "grid_half_width",
    "is_blown_up",
    "molecule_grid_figure",
    "molecule_extents",
    "molecule_grid_png",
    "panel_title",
    "view_direction",
]
