"""The symmetrised target for conformer generation: O(3) or SO(3) times Aut(G).

Paper 000 (section 4.2) generates the conformers of a molecular graph `G = (V, E)`. A
conformer is a point cloud whose atoms are labelled by `G`, so the symmetry group of the
task is the product of the rotations (O(3), or SO(3) when the graph fixes a chirality) and
the graph automorphisms `Aut(G)` (relabellings of the atoms that preserve elements and
bonds). The symmetrised target is the group-averaged posterior mean of paper 000, section 3,

    phi_G(x_t) = sum_m sum_{p in Aut(G)} int R.x0_m[p] w(R, p, m) dR / (same without R.x0_m[p]),
    w(R, p, m) = pi_m exp(-||x_t - alpha R.x0_m[p]||^2 / (2 sigma^2)),

over a bank `x0_m` of clean conformers of the same molecule (its own conformer, the "own
orbit", or all its training conformers with prior weights `pi_m`, e.g. Boltzmann weights).

This module is a thin layer over `symmetrised_target_exact` (exact: the rotation integral in
closed form, matrix-Fisher, and Aut(G) enumerated) and over the Monte Carlo estimator that
paper 000's public code uses (sampled rotations, truncated automorphism list), plus the forms
of the target a conformer generator trains on: x0 / eps / v for diffusion (ETDiff-style) and
the velocity for flow matching (ETFlow-style).

Facts from the public code of this line of work (read, not copied):
- ETFlow (`shenoynikhil/ETFlow`, `etflow/models/model.py`): the path is
  `x_t = t x1 + (1 - t) x0 + s sqrt(t (1 - t)) eps` with `x1` the data, `x0` the prior sample
  (harmonic prior of the bond graph, Kabsch-aligned to `x1`), `s = 0.1`, both centred; the
  regression target is `u_t = x1 - x0 + d/dt[s sqrt(t(1-t))] eps`.
- Paper 000's code (`vinhsuhi/Orbit-Diffusion`, `IEF/etflow/models/model.py`,
  `compute_target`; run with `run.sh <config> ief 200 50`): 200 Haar SO(3) rotations with the
  first replaced by the identity, at most 50 automorphisms (identity first, from nauty with
  atom features as colours, keeping only those that move a heavy atom), the bank the
  molecule's conformer, the Gaussian kernel with `alpha = t` and
  `sigma^2 = (1 - t)^2 + s^2 t (1 - t)` (the prior treated as N(0, I)), and the velocity
  target `0.5 [(A - x_t) / (1 - t) + (x_t - x0) / t]` with `A` the symmetrised endpoint
  (the `"two_sided"` form below).

Coordinates: rotations act about the origin, so the bank is centred (masked centre of mass
removed) by default and `x_t` should be centre-of-mass free too (`symdiff_jax.groups.
remove_com`), as it is when the prior noise and the data are both centred.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from symdiff_jax.groups import remove_com, sample_group
from symdiff_jax.targets.exact import symmetrised_target_exact
from symdiff_jax.targets.losses import target_in_form

__all__ = [
    "CONFORMER_GROUPS",
    "VELOCITY_FORMS",
    "chirality_group",
    "conformer_symmetrised_target",
    "conformer_target_in_form",
    "conformer_target_mc",
    "flow_path_coefficients",
    "flow_velocity_target",
]

#: Rotation groups a conformer target may use.
CONFORMER_GROUPS: tuple[str, ...] = ("O3", "SO3")
#: Flow-matching velocity forms of `flow_velocity_target`.
VELOCITY_FORMS: tuple[str, ...] = ("endpoint", "difference", "two_sided")
_DIFFUSION_FORMS = ("x0", "eps", "v")


def _check_group(group: Any) -> str:
    if not isinstance(group, str) or group not in CONFORMER_GROUPS:
        raise ValueError(
            f"group must be one of {CONFORMER_GROUPS} for conformers (O(3) when the graph "
            f"fixes no chirality, SO(3) when it does; see chirality_group); got {group!r}."
        )
    return group


def _prepare(x_t, x0_bank, automorphisms, mask, center_bank: bool):
    """Shapes the bank to `[M, N, 3]`, pads the automorphisms to `N` atoms, centres the bank."""
    x_t = jnp.asarray(x_t)
    x0 = jnp.asarray(x0_bank)
    if x0.ndim == 2:
        x0 = x0[None]
    if x_t.ndim != 2 or x_t.shape[-1] != 3:
        raise ValueError(
            f"x_t must be one conformer of shape [N, 3]; got shape {x_t.shape}. For a batch "
            "use jax.vmap."
        )
    if x0.ndim != 3 or x0.shape[1:] != x_t.shape:
        raise ValueError(
            f"x0_bank must have shape [M, N, 3] (or [N, 3]) with the N = {x_t.shape[0]} atoms "
            f"of x_t; got shape {jnp.shape(x0_bank)}."
        )
    n = x_t.shape[0]
    perms = jnp.asarray(automorphisms)
    if perms.ndim == 1:
        perms = perms[None]
    if perms.ndim != 2 or not jnp.issubdtype(perms.dtype, jnp.integer):
        raise ValueError(
            "automorphisms must be an integer array [K, n] of atom permutations (from "
            f"graph_automorphisms); got shape {perms.shape} and dtype {perms.dtype}."
        )
    k, n_perm = perms.shape
    if n_perm > n:
        raise ValueError(
            f"automorphisms act on {n_perm} atoms but x_t has only N = {n}; they must act on "
            "the first n <= N (real) atoms."
        )
    if n_perm < n:  # fix the padded atoms, as pad_permutations does
        tail = jnp.broadcast_to(jnp.arange(n_perm, n, dtype=perms.dtype), (k, n - n_perm))
        perms = jnp.concatenate([perms, tail], axis=1)
    if center_bank:
        m = None if mask is None else jnp.broadcast_to(jnp.asarray(mask), x0.shape[:2])
        x0 = remove_com(x0, m)
    return x_t, x0, perms


def conformer_symmetrised_target(
    x_t: jax.Array,
    x0_bank: jax.Array,
    alpha,
    sigma,
    automorphisms: jax.Array,
    *,
    group: str = "O3",
    mask: jax.Array | None = None,
    bank_log_weights: jax.Array | None = None,
    center_bank: bool = True,
    automorphism_mask: jax.Array | None = None,
) -> jax.Array:
    """Exact phi_G over G = O(3) (or SO(3)) x Aut(G), paper 000, section 3 / section 4.2.

    Calls `symmetrised_target_exact(..., group=group, permutations=automorphisms)`: the
    rotation integral in closed form (matrix-Fisher), every automorphism and bank member
    enumerated, all terms combined by one softmax. Finite from sigma ~ 1e-3 to 1 in float32;
    as sigma -> 0 it tends to the bank conformer, automorphism and (for O(3)) reflection
    closest to x_t after Kabsch alignment, i.e. the Kabsch-aligned, best-relabelled x0.

    The automorphisms must form a group for this to be the exact group average
    (`graph_automorphisms` without `max_count`); a truncated list gives the average over
    that subset. With group "SO3" they should also preserve the chirality of the bank
    conformers (graph automorphisms ignore chirality; for most molecules with stereocentres
    no automorphism inverts one, but meso-type symmetric molecules can have some).

    Pure and jit/vmap compatible (`group` and `center_bank` static).

    Args:
      x_t: `[N, 3]` noisy conformer (centre-of-mass free; padded rows zero).
      x0_bank: `[M, N, 3]` clean conformers of the same molecule in the same atom order
        (M = 1: its own orbit), or `[N, 3]` for one.
      alpha, sigma: scalar signal and noise levels (sigma > 0); for flow matching see
        `flow_path_coefficients`.
      automorphisms: `[K, n]` integer atom permutations with `n <= N` (row p acts as
        `x -> x[p]`, the convention of `graph_automorphisms` / `permute`); padded atoms
        `n..N-1` are fixed.
      group: "O3" or "SO3" (see `chirality_group`).
      mask: optional `[N]`, 1 for real atoms.
      bank_log_weights: optional `[M]` log prior weights of the bank (e.g. log Boltzmann
        weights); uniform when None.
      center_bank: remove the (masked) centre of mass of every bank conformer first.
      automorphism_mask: optional `[K]`, 1 for the rows of `automorphisms` that belong to
        the group and 0 for padding rows (a batch pads every molecule's group to the same
        K); padding rows get zero weight.

    Returns:
      `[N, 3]` phi_G, zero on padded rows.
    """
    group = _check_group(group)
    x_t, x0, perms = _prepare(x_t, x0_bank, automorphisms, mask, center_bank)
    if automorphism_mask is not None:
        # Every (bank member, automorphism) pair becomes one bank entry, padding rows with
        # log weight -inf, so the softmax of the exact target ignores them.
        m, k = x0.shape[0], perms.shape[0]
        keep = jnp.asarray(automorphism_mask).reshape(k) > 0
        log_w = (
            jnp.zeros((m,), x0.dtype)
            if bank_log_weights is None
            else jnp.asarray(bank_log_weights, x0.dtype).reshape(m)
        )
        x0 = x0[:, perms].reshape(m * k, *x0.shape[1:])
        bank_log_weights = (log_w[:, None] + jnp.where(keep, 0.0, -jnp.inf)[None]).reshape(-1)
        perms = None
    return symmetrised_target_exact(
        x_t,
        x0,
        alpha,
        sigma,
        group=group,
        mask=mask,
        permutations=perms,
        bank_log_weights=bank_log_weights,
    )


def conformer_target_mc(
    key: jax.Array,
    x_t: jax.Array,
    x0_bank: jax.Array,
    alpha,
    sigma,
    automorphisms: jax.Array,
    *,
    group: str = "O3",
    num_rotations: int = 200,
    num_permutations: int | None = 50,
    identity_first: bool = True,
    mask: jax.Array | None = None,
    bank_log_weights: jax.Array | None = None,
    center_bank: bool = True,
) -> jax.Array:
    """Monte Carlo phi_G as in paper 000's conformer code (Algorithm 1 on R x Aut(G)).

    Draws `num_rotations` Haar rotations of `group` (the first replaced by the identity
    when `identity_first`, as the public code does), keeps the first `num_permutations`
    rows of `automorphisms` (a truncated list, not a subgroup, when the group is larger),
    and forms every (rotation, automorphism, bank member) triple with self-normalised
    Gaussian-kernel weights (paper 000, Algorithm 1). It is consistent as the number of
    rotations grows (bias O(1/K)) provided the automorphism list is not truncated; the
    exact limit is `conformer_symmetrised_target`.

    Pure and jit/vmap compatible: `num_rotations`, `num_permutations`, `group`,
    `identity_first` and `center_bank` are static. Memory O(K P M N).

    Args:
      key: PRNG key for the rotations.
      x_t, x0_bank, alpha, sigma, automorphisms, mask, bank_log_weights, center_bank: as
        in `conformer_symmetrised_target`.
      group: "O3" (Haar on O(3)) or "SO3".
      num_rotations: K >= 1 sampled rotations.
      num_permutations: at most this many automorphisms (the first rows); None: all.
      identity_first: make the first rotation the identity.

    Returns:
      `[N, 3]` estimate of phi_G.
    """
    group = _check_group(group)
    if not isinstance(num_rotations, int) or isinstance(num_rotations, bool) or num_rotations < 1:
        raise ValueError(f"num_rotations must be a positive int; got {num_rotations!r}.")
    if num_permutations is not None and (
        not isinstance(num_permutations, int) or num_permutations < 1
    ):
        raise ValueError(
            f"num_permutations must be a positive int or None; got {num_permutations!r}."
        )
    x_t, x0, perms = _prepare(x_t, x0_bank, automorphisms, mask, center_bank)
    if num_permutations is not None:
        perms = perms[:num_permutations]
    dtype = jnp.result_type(x_t.dtype, x0.dtype, float)
    rotations = sample_group(key, group, (num_rotations,), dtype)
    if identity_first:
        rotations = rotations.at[0].set(jnp.eye(3, dtype=dtype))
    # The sampled rotations enter as a finite set of matrices: symmetrised_target_exact then
    # enumerates all (permutation, rotation, bank) terms with Gaussian-kernel weights.
    return symmetrised_target_exact(
        x_t,
        x0,
        alpha,
        sigma,
        group=rotations,
        mask=mask,
        permutations=perms,
        bank_log_weights=bank_log_weights,
    )


def chirality_group(mol: Any, *, include_unassigned: bool = False) -> str:
    """The rotation group of a molecule's conformers: "SO3" if its graph fixes a chirality.

    Rule: "SO3" when RDKit finds a tetrahedral stereocentre with an assigned configuration
    (`Chem.FindMolChiralCenters(mol, includeUnassigned=include_unassigned,
    useLegacyImplementation=False)` is non-empty, i.e. an atom carries a CW/CCW chiral tag
    that is a real stereocentre), otherwise "O3". A reflection inverts every stereocentre,
    so it maps a conformer of one enantiomer to a conformer of the other: a graph that
    names the enantiomer must not be averaged over reflections. Double-bond (E/Z)
    stereochemistry is kept by reflections and does not matter here. A graph without
    stereo tags (e.g. QM9's GDB SMILES) describes both enantiomers, so "O3" is right even
    if the molecule has potential stereocentres; pass `include_unassigned=True` to count
    those too. Meso compounds (stereocentres but achiral) are reported "SO3", which is
    valid but averages over a smaller group than needed.

    Args:
      mol: an `rdkit.Chem.Mol` (its chiral tags are read on a copy; from a 3D structure call
        `Chem.AssignStereochemistryFrom3D` first if the tags should reflect the geometry).
      include_unassigned: also count stereocentres without an assigned configuration.

    Returns:
      "SO3" or "O3".
    """
    from rdkit import Chem

    if not isinstance(mol, Chem.Mol):
        raise ValueError(f"chirality_group needs an rdkit.Chem.Mol; got {type(mol).__name__}.")
    centres = Chem.FindMolChiralCenters(
        Chem.Mol(mol), includeUnassigned=include_unassigned, useLegacyImplementation=False
    )
    return "SO3" if centres else "O3"


def flow_path_coefficients(t, path_sigma: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """`(alpha, sigma)` of the flow-matching path seen as a Gaussian kernel around t x1.

    For the ETFlow path `x_t = t x1 + (1 - t) x0 + s sqrt(t (1 - t)) eps` with a standard
    normal prior sample `x0` and `eps`, `x_t | x1 ~ N(t x1, ((1 - t)^2 + s^2 t (1 - t)) I)`:
    `alpha = t` and `sigma = sqrt((1 - t)^2 + s^2 t (1 - t))`, the kernel paper 000's
    conformer code uses (it treats the harmonic, Kabsch-aligned prior as N(0, I), an
    approximation). Pass these to `conformer_symmetrised_target` for the posterior mean of
    the data endpoint x1.

    Args:
      t: time in [0, 1) (data at t = 1), scalar or array.
      path_sigma: `s`, the path noise (ETFlow: 0.1; 0 for the straight path).

    Returns:
      `(alpha, sigma)` with the shape of `t`.
    """
    t = jnp.asarray(t)
    t = t.astype(jnp.result_type(t.dtype, float))
    sigma2 = (1.0 - t) ** 2 + path_sigma**2 * t * (1.0 - t)
    return t, jnp.sqrt(sigma2)


def flow_velocity_target(
    x1_target: jax.Array,
    x_t: jax.Array,
    t,
    *,
    x_prior: jax.Array | None = None,
    form: str = "endpoint",
) -> jax.Array:
    """Flow-matching velocity target built from a (symmetrised) data endpoint.

    With the straight path `x_t = t x1 + (1 - t) x0` the conditional velocity is
    `u = x1 - x0`, and given x_t the prior sample is `x0 = (x_t - t x1) / (1 - t)`. Replacing
    the data endpoint x1 by a target `x1*` (the symmetrised endpoint phi_G, or x1 itself):

      "endpoint":   u* = (x1* - x_t) / (1 - t)   = E[x1 - x0 | x_t] when x1* = E[x1 | x_t]
                    (the minimiser of the flow-matching loss on the straight path);
      "difference": u* = x1* - x_prior           (ETFlow's `x1 - x0` with the symmetrised
                    endpoint, paper 000 section 4.2 applied to ETFlow);
      "two_sided":  u* = ((x1* - x_t) / (1 - t) + (x_t - x_prior) / t) / 2  (the velocity
                    target of paper 000's public code, `predict_mode == "v"`).

    All three equal `x1 - x0` when `x1* = x1` and `x_t = t x1 + (1 - t) x0` exactly. The
    path-noise term `d/dt[s sqrt(t(1-t))] eps` of ETFlow is not included.

    Args:
      x1_target: `[..., N, 3]` endpoint target (e.g. `conformer_symmetrised_target` with
        `flow_path_coefficients(t, s)`).
      x_t: `[..., N, 3]` point on the path.
      t: time, scalar or `[...]` per example; keep it below 1 ("endpoint", "two_sided")
        and above 0 ("two_sided") (ETFlow samples t in [1e-4, 0.9999]).
      x_prior: `[..., N, 3]` prior sample x0 of the pair; needed for "difference" and
        "two_sided".
      form: one of `VELOCITY_FORMS`.

    Returns:
      `[..., N, 3]` velocity target.
    """
    if form not in VELOCITY_FORMS:
        raise ValueError(f"Unknown velocity form {form!r}; expected one of {VELOCITY_FORMS}.")
    x1 = jnp.asarray(x1_target)
    x_t = jnp.asarray(x_t)
    if x1.shape != x_t.shape:
        raise ValueError(
            f"x1_target {x1.shape} and x_t {x_t.shape} must have the same shape [..., N, 3]."
        )
    if form != "endpoint":
        if x_prior is None:
            raise ValueError(f"The {form!r} velocity needs x_prior, the prior sample x0.")
        x_prior = jnp.asarray(x_prior)
        if x_prior.shape != x_t.shape:
            raise ValueError(f"x_prior {x_prior.shape} must have the shape of x_t {x_t.shape}.")
    t = jnp.asarray(t)
    t = t.reshape(t.shape + (1,) * (x_t.ndim - t.ndim)) if t.ndim < x_t.ndim else t
    if form == "difference":
        return x1 - x_prior
    endpoint = (x1 - x_t) / (1.0 - t)
    if form == "endpoint":
        return endpoint
    return 0.5 * (endpoint + (x_t - x_prior) / t)


def conformer_target_in_form(
    x0_target: jax.Array,
    x_t: jax.Array,
    *,
    form: str,
    alpha=None,
    sigma=None,
    t=None,
    x_prior: jax.Array | None = None,
) -> jax.Array:
    """The regression target of a conformer model in its output parametrisation.

    Diffusion (ETDiff-style, `x_t = alpha x0 + sigma eps`): "x0", "eps", "v" via
    `symdiff_jax.targets.target_in_form` (needs alpha, sigma). Flow matching
    (ETFlow-style): "velocity" (= `flow_velocity_target` form "endpoint", needs t),
    "velocity_difference" and "velocity_two_sided" (need t and x_prior).

    Args:
      x0_target: `[..., N, 3]` target in x0 form: phi_G (symmetrised) or the data x0.
      x_t: `[..., N, 3]` model input.
      form: "x0", "eps", "v", "velocity", "velocity_difference" or "velocity_two_sided".
      alpha, sigma: diffusion coefficients, scalars or per-example `[...]`.
      t: flow-matching time, scalar or per-example `[...]`.
      x_prior: `[..., N, 3]` prior sample of the flow-matching pair.

    Returns:
      `[..., N, 3]` target.
    """
    if form in _DIFFUSION_FORMS:
        if form != "x0" and (alpha is None or sigma is None):
            raise ValueError(f"The {form!r} form needs alpha and sigma; got None.")
        return target_in_form(x0_target, x_t, alpha, sigma, form)
    velocity = {
        "velocity": "endpoint",
        "velocity_difference": "difference",
        "velocity_two_sided": "two_sided",
    }
    if form not in velocity:
        raise ValueError(
            f"Unknown target form {form!r}; expected one of {_DIFFUSION_FORMS + tuple(velocity)}."
        )
    if t is None:
        raise ValueError(f"The {form!r} form needs the flow-matching time t; got None.")
    return flow_velocity_target(x0_target, x_t, t, x_prior=x_prior, form=velocity[form])
