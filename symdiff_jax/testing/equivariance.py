"""Equivariance assertions: deterministic (f(g . x) = g . f(x)) and in distribution.

Both draw the group element themselves, as a pair g = (p, R) of S_N x O(d)
(`symdiff_jax.groups.SNxO`): a uniform permutation `p` of the real atoms
(padded atoms stay in place) and a Haar rotation `R`, either from our own
sampler (`reference="jax"`) or, independently of it, from
`scipy.spatial.transform.Rotation.random` (`reference="scipy"`).

Actions are functions `act(g, value) -> g . value`:

- `act_on_state` (default, inputs and outputs): every array leaf `[..., N, C]`
  of the value is permuted along its atom axis (-2); the positions (the array
  itself, the first entry of a tuple, or the entry "x" of a mapping) are also
  rotated, `x -> x @ R^T`.
- `act_on_atom_features`: permutation only (per-atom invariant features).
- `act_on_invariant`: the identity (invariant outputs; `invariant=True`).
- `act_on_rotation`: left multiplication `R_out -> R @ R_out`, permutation
  ignored: the action on the output of a kernel to the group (a gamma).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from symdiff_jax.groups import SNxO, permute, random_permutation, sample_group
from symdiff_jax.groups.names import check_group_dimension, check_group_name
from symdiff_jax.symmetrise.actions import get_positions, rotate_positions
from symdiff_jax.testing.two_sample import energy_test

Action = Callable[[SNxO, Any], Any]


# ----------------------------------------------------------------------------- actions


def _permute_leaves(value: Any, perm: jax.Array) -> Any:
    def leaf(a):
        a = jnp.asarray(a)
        return permute(a, perm, axis=-2) if a.ndim >= 2 else a

    return jax.tree_util.tree_map(leaf, value)


def act_on_state(g: SNxO, state: Any) -> Any:
    """`g . state`: permute every leaf `[..., N, C]` along the atom axis, rotate the positions."""
    return rotate_positions(_permute_leaves(state, g.perm), g.rotation)


def act_on_atom_features(g: SNxO, value: Any) -> Any:
    """`g . value` for rotation-invariant per-atom values: permutation of the atom axis only."""
    return _permute_leaves(value, g.perm)


def act_on_invariant(g: SNxO, value: Any) -> Any:
    """`g . value = value`: the trivial action (invariant outputs)."""
    del g
    return value


def act_on_rotation(g: SNxO, rotation: jax.Array) -> jax.Array:
    """`g . R_out = R @ R_out`: left multiplication, the action on the output of a gamma."""
    return jnp.matmul(g.rotation, rotation)


# ----------------------------------------------------------------------------- sampling


def _check_group(group: str | None) -> None:
    if group is not None:
        check_group_name(group, "or None (permutations only)")


def _seed_from_key(key: jax.Array) -> int:
    return int(jax.random.randint(key, (), 0, 2**31 - 1))


def _scipy_rotation(rng: np.random.Generator, group: str) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    if group in ("O3", "SO3"):
        r = Rotation.random(random_state=rng).as_matrix()
    else:
        angle = rng.uniform(-np.pi, np.pi)
        r = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    if group in ("O3", "O2") and rng.random() < 0.5:
        # The det = -1 coset: R diag(1, .., 1, -1), Haar on it when R is Haar on SO(d).
        r = r * np.concatenate([np.ones(r.shape[0] - 1), [-1.0]])[None, :]
    return r


@functools.partial(jax.jit, static_argnames=("group", "dim", "permutations", "dtype"))
def _sample_jax(key_perm, key_rot, mask, group, dim, permutations, dtype):
    if group is None:
        rotation = jnp.eye(dim, dtype=dtype)
    else:
        rotation = sample_group(key_rot, group, (), dtype)
    if permutations:
        perm = random_permutation(key_perm, mask)
    else:
        perm = jnp.arange(mask.shape[0], dtype=jnp.int32)
    return perm, rotation


def sample_test_element(
    key: jax.Array,
    num_atoms: int,
    *,
    group: str | None = "O3",
    dim: int | None = None,
    mask: jax.Array | None = None,
    permutations: bool = True,
    reference: str = "jax",
    dtype=None,
) -> SNxO:
    """A random element g = (p, R) of S_N x G for equivariance tests.

    Args:
      key: PRNG key.
      num_atoms: N.
      group: "O3", "SO3", "O2", "SO2", or None for the identity rotation.
      dim: spatial dimension when `group` is None (default 3).
      mask: `[N]` real-atom mask; `p` permutes the real atoms only.
      permutations: if False, `p` is the identity.
      reference: "jax" (`symdiff_jax.groups.sample_group`) or "scipy"
        (`scipy.spatial.transform.Rotation.random`, independent of our sampler).
      dtype: float dtype of the rotation.

    Returns:
      `SNxO(perm [N] int32, rotation [d, d])`.
    """
    _check_group(group)
    if reference not in ("jax", "scipy"):
        raise ValueError(f"reference must be 'jax' or 'scipy'; got {reference!r}.")
    dtype = jnp.dtype(dtype or jnp.result_type(float))
    key_perm, key_rot = jax.random.split(key)
    if mask is None:
        mask = jnp.ones((num_atoms,))
    mask = jnp.asarray(mask)
    if mask.shape != (num_atoms,):
        raise ValueError(
            f"mask must have shape [N] = ({num_atoms},) for the group element; got {mask.shape}. "
            "Equivariance checks take one (unbatched) mask."
        )
    if reference == "scipy":
        rng = np.random.default_rng(_seed_from_key(key_rot))
        if group is None:
            rotation = np.eye(dim or 3)
        else:
            rotation = _scipy_rotation(rng, group)
        perm = np.arange(num_atoms)
        if permutations:
            real = np.flatnonzero(np.asarray(mask) > 0)
            perm[real] = rng.permutation(real)
        return SNxO(jnp.asarray(perm, jnp.int32), jnp.asarray(rotation, dtype))
    perm, rotation = _sample_jax(key_perm, key_rot, mask, group, dim or 3, permutations, dtype)
    return SNxO(perm, rotation)


# ----------------------------------------------------------------------------- helpers


def _argnums(argnums: int | Sequence[int], num_args: int) -> tuple:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums:
        raise ValueError("argnums must name at least one argument that the group acts on.")
    for i in nums:
        if not -num_args <= i < num_args:
            raise ValueError(f"argnums {nums} out of range for {num_args} positional arguments.")
    return tuple(i % num_args for i in nums)


def _input_geometry(value: Any, group: str | None):
    positions = jnp.asarray(get_positions(value))
    if positions.ndim < 2:
        raise ValueError(
            f"the input acted on must hold positions [..., N, d]; got shape {positions.shape}."
        )
    if group is not None:
        check_group_dimension(group, positions.shape)
    dtype = positions.dtype if jnp.issubdtype(positions.dtype, jnp.floating) else None
    return positions.shape[-2], positions.shape[-1], dtype


def _test_setting(
    value: Any,
    group: str | None,
    mask: jax.Array | None,
    permutations: bool,
    reference: str,
    in_act: Action | None,
    out_act: Action | None,
    invariant: bool,
) -> tuple[Callable[[jax.Array], SNxO], Action, Action]:
    """The sampler `key -> g` of test elements for the input `value`, and the input and
    output actions with their defaults (`act_on_state`; `act_on_invariant` if `invariant`)."""
    num_atoms, dim, dtype = _input_geometry(value, group)
    options = dict(group=group, mask=mask, permutations=permutations, reference=reference)
    sample = functools.partial(
        sample_test_element, num_atoms=num_atoms, dim=dim, dtype=dtype, **options
    )
    in_act = act_on_state if in_act is None else in_act
    if out_act is None:
        out_act = act_on_invariant if invariant else act_on_state
    return sample, in_act, out_act


def _default_tolerance(tree: Any) -> float:
    leaves = [jnp.asarray(a) for a in jax.tree_util.tree_leaves(tree)]
    if any(a.dtype == jnp.float64 for a in leaves):
        return 1e-8
    return 1e-4


def _max_abs_difference(a: Any, b: Any) -> float:
    diffs = jax.tree_util.tree_map(
        lambda u, v: float(jnp.max(jnp.abs(jnp.asarray(u) - jnp.asarray(v)), initial=0.0)), a, b
    )
    return max(jax.tree_util.tree_leaves(diffs), default=0.0)


def _mask_kwargs(mask, perm=None) -> dict:
    if mask is None:
        return {}
    return {"mask": mask if perm is None else permute(mask, perm, axis=-1)}


def _describe(g: SNxO) -> str:
    return (
        f"rotation=\n{np.array2string(np.asarray(g.rotation), precision=4)}\n"
        f"permutation={np.asarray(g.perm).tolist()}"
    )


# ----------------------------------------------------------------------------- deterministic


def assert_equivariant(
    fn: Callable[..., Any],
    key: jax.Array,
    *args: Any,
    group: str | None = "O3",
    mask: jax.Array | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    num_trials: int = 3,
    permutations: bool = True,
    invariant: bool = False,
    argnums: int | Sequence[int] = 0,
    in_act: Action | None = None,
    out_act: Action | None = None,
    reference: str = "jax",
) -> None:
    """Asserts `fn(g . x) == g . fn(x)` for `num_trials` random g in S_N x G.

    Args:
      fn: the deterministic function under test, called as `fn(*args)` (plus
        `mask=` when a mask is given).
      key: PRNG key for the group elements.
      *args: the arguments of `fn`. The ones named by `argnums` are acted on
        (states: arrays `[..., N, d]`, `(x, h, ...)` or `{"x": x, ...}`); the
        others (time, conditioning) pass unchanged.
      group: "O3", "SO3", "O2", "SO2", or None (permutations only).
      mask: optional `[N]` mask of real atoms, passed to `fn` as `mask=` (and
        permuted with the atoms); padded atoms are never moved.
      atol, rtol: tolerances of `chex.assert_trees_all_close`; default 1e-4 for
        float32 outputs and 1e-8 for float64.
      num_trials: number of independent group elements.
      permutations: also test S_N (permutations of the real atoms).
      invariant: the output should not change at all (shortcut for
        `out_act=act_on_invariant`).
      argnums: index or indices into `args` of the inputs the group acts on.
      in_act: action on the inputs, `in_act(g, value)`; default `act_on_state`.
      out_act: action on the output; default `act_on_state` (or the identity
        when `invariant=True`).
      reference: "jax" or "scipy": which sampler draws the rotations (scipy's is
        independent of the code under test).

    Raises:
      AssertionError: naming the trial, the largest deviation and the group element.
    """
    _check_group(group)
    if num_trials < 1:
        raise ValueError(f"num_trials must be >= 1; got {num_trials}.")
    nums = _argnums(argnums, len(args))
    sample, in_act, out_act = _test_setting(
        args[nums[0]], group, mask, permutations, reference, in_act, out_act, invariant
    )

    output = fn(*args, **_mask_kwargs(mask))
    atol = _default_tolerance(output) if atol is None else atol
    rtol = _default_tolerance(output) if rtol is None else rtol
    for trial, k in enumerate(jax.random.split(key, num_trials)):
        g = sample(k)
        moved = [in_act(g, a) if i in nums else a for i, a in enumerate(args)]
        lhs = fn(*moved, **_mask_kwargs(mask, g.perm))
        rhs = out_act(g, output)
        try:
            chex.assert_trees_all_close(lhs, rhs, atol=atol, rtol=rtol)
        except (AssertionError, ValueError) as err:
            what = "invariant" if invariant else "equivariant"
            raise AssertionError(
                f"fn is not {what} under {group or 'the identity rotation'}"
                f"{' x S_N' if permutations else ''}: trial {trial + 1}/{num_trials}, "
                f"max |fn(g . x) - g . fn(x)| = {_max_abs_difference(lhs, rhs):.3e} "
                f"(atol={atol}, rtol={rtol}) for\n{_describe(g)}\n{err}"
            ) from None


# ----------------------------------------------------------------------------- stochastic


def _flatten_samples(tree: Any) -> np.ndarray:
    leaves = [np.asarray(a, np.float64) for a in jax.tree_util.tree_leaves(tree)]
    return np.concatenate([a.reshape(a.shape[0], -1) for a in leaves], axis=1)


def assert_stochastically_equivariant(
    kernel: Callable[..., Any],
    key: jax.Array,
    x: Any,
    *args: Any,
    group: str | None = "O3",
    mask: jax.Array | None = None,
    num_samples: int = 500,
    alpha: float = 1e-3,
    num_group_elements: int = 3,
    permutations: bool = True,
    invariant: bool = False,
    in_act: Action | None = None,
    out_act: Action | None = None,
    reference: str = "jax",
    num_permutations: int | None = None,
    jit: bool = True,
) -> list:
    """Asserts that a Markov kernel is equivariant in distribution: `k(. | g x) = g k(. | x)`.

    For each of `num_group_elements` random g = (p, R), it draws
    `Y1_i ~ kernel(k_i, g . x)` and `Y2_j = g . Y2'_j`, `Y2'_j ~ kernel(k'_j, x)`
    with independent keys (`num_samples` each, `jax.vmap`), flattens every sample
    to a vector, and runs an exact permutation two-sample test based on the
    energy distance (`energy_test`): consistent against every difference of the
    two laws, means and covariances alike. Each g is tested at level
    `alpha / num_group_elements` (Bonferroni), so the false-alarm rate of the
    whole assertion, for an equivariant kernel, is at most `alpha`.

    Power: differences whose energy distance is large compared with
    `1 / sqrt(num_samples)` times the spread of the outputs are found; a tiny
    non-equivariance (e.g. a 1% change of one variance) needs many more samples.

    Args:
      kernel: `kernel(key, x, *args) -> y` (plus `mask=` when a mask is given);
        `y` is any pytree of arrays.
      key: PRNG key (group elements, kernel keys, permutations).
      x: the input state acted on (`[N, d]`, `(x, h, ...)` or `{"x": x, ...}`).
      *args: passed unchanged to the kernel (time, conditioning).
      group: "O3", "SO3", "O2", "SO2", or None (permutations only).
      mask: optional `[N]` real-atom mask (passed as `mask=`, permuted with the atoms).
      num_samples: samples per side and per group element.
      alpha: false-alarm rate of the assertion.
      num_group_elements: number of random g tested.
      permutations: include S_N in g.
      invariant: the law of the output should not change (`out_act` = identity).
      in_act, out_act: actions on the input and on one output sample; default
        `act_on_state` (use `act_on_rotation` for a kernel to the group).
      reference: "jax" or "scipy" rotation sampler (see `sample_test_element`).
      num_permutations: the most relabellings per test; default `ceil(2 G / alpha)`,
        so that the smallest attainable p-value is half the per-test level. The
        relabellings stop early once the p-value is clearly large (`energy_test`).
      jit: compile the vmapped kernel.

    Returns:
      One `TwoSampleResult(statistic, pvalue, num_permutations)` per group element.

    Raises:
      AssertionError: with the statistic and p-value of the rejected test.
    """
    _check_group(group)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha}.")
    if num_samples < 2 or num_group_elements < 1:
        raise ValueError(
            f"need num_samples >= 2 and num_group_elements >= 1; got {num_samples} and "
            f"{num_group_elements}."
        )
    level = alpha / num_group_elements
    if num_permutations is None:
        num_permutations = math.ceil(2.0 / level)
    if (1.0 / (1.0 + num_permutations)) > level:
        raise ValueError(
            f"with num_permutations={num_permutations} the smallest p-value, "
            f"{1.0 / (1.0 + num_permutations):.2e}, exceeds the per-test level "
            f"alpha / num_group_elements = {level:.2e}: the test could never reject. "
            f"Use num_permutations >= {math.ceil(1.0 / level)}."
        )
    sample, in_act, out_act = _test_setting(
        x, group, mask, permutations, reference, in_act, out_act, invariant
    )

    def draw(keys, state, m):
        kwargs = {} if m is None else {"mask": m}
        return jax.vmap(lambda k: kernel(k, state, *args, **kwargs))(keys)

    def act_on_samples(g, samples):
        return jax.vmap(lambda y: out_act(g, y))(samples)

    if jit:
        draw = jax.jit(draw)

    results = []
    keys = jax.random.split(key, num_group_elements)
    for index, k in enumerate(keys):
        key_g, key_1, key_2, key_test = jax.random.split(k, 4)
        g = sample(key_g)
        g_mask = None if mask is None else permute(jnp.asarray(mask), g.perm, axis=-1)
        y_moved_input = draw(jax.random.split(key_1, num_samples), in_act(g, x), g_mask)
        y_moved_output = act_on_samples(
            g, draw(jax.random.split(key_2, num_samples), x, None if mask is None else mask)
        )
        result = energy_test(
            _flatten_samples(y_moved_input),
            _flatten_samples(y_moved_output),
            num_permutations=num_permutations,
            seed=_seed_from_key(key_test),
        )
        results.append(result)
        if result.pvalue <= level:
            what = "invariant" if invariant else "equivariant"
            raise AssertionError(
                f"kernel is not {what} in distribution: for group element "
                f"{index + 1}/{num_group_elements} the energy two-sample test rejects "
                f"k(. | g . x) = g . k(. | x): statistic = {result.statistic:.4g}, "
                f"p-value = {result.pvalue:.3g} <= alpha / {num_group_elements} = {level:.3g} "
                f"({num_samples} samples per side, {result.num_permutations} permutations).\n"
                f"{_describe(g)}"
            )
    return results
