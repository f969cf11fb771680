"""Flag parsing of the command-line tools: one-line errors, `--help` that exits 0, config checks.

`parse_flags(argv)` is the `flags_parser` of `absl.app.run` for `experiments.train`,
`experiments.sample`, `experiments.evaluate` and `experiments.benchmark`:
  - `--help` / `-h` / `--helpshort` / `--helpfull` print the usage and exit 0;
  - a `--config.<key>=<value>` override of a key the config does not have, a value of the
    wrong type, or a number out of range (`check_config`) prints ONE line naming the key,
    the value and what is valid (for an unknown key: the closest valid keys), and exits 2
    before anything is compiled;
  - a `data.dataset = "molecules"` source that cannot be read (`read_data_source`) is one
    line and exit 2, before anything is compiled;
  - any other flag error is one line and exit 2 as well.
It also keeps JAX's "Unable to initialize backend 'tpu'" line out of the log.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging as std_logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from absl import app, flags

#: Exit status of a usage or config error (as argparse).
USAGE_EXIT = 2
HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")


class ConfigError(ValueError):
    """A config value that cannot run, with a one-line message for the user."""


# --------------------------------------------------------------------------------------
# The checks of the config's values


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_at_least(low: int) -> Callable[[Any], str | None]:
    def check(value):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            return f"an integer >= {low}"
        return None

    return check


def _positive_finite(value: Any) -> str | None:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        return "a finite number > 0"
    return None


def _non_negative_finite(value: Any) -> str | None:
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        return "a finite number >= 0"
    return None


def _decay(value: Any) -> str | None:
    if not _is_number(value) or not 0 <= value < 1:
        return "a number in [0, 1)"
    return None


def _fractions(value: Any) -> str | None:
    try:
        f = [float(v) for v in value]
    except (TypeError, ValueError):
        f = []
    if len(f) != 3 or min(f) < 0 or not math.isclose(sum(f), 1.0, abs_tol=1e-6) or f[0] <= 0:
        return "three fractions (train, valid, test) >= 0 summing to 1, train > 0"
    return None


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else "one of " + ", ".join(map(repr, choices))

    return check


# The last component of a key -> its check (the same key means the same thing in every config).
RULES: dict[str, Callable[[Any], str | None]] = {
    "batch_size": _int_at_least(1),
    "num_train_steps": _int_at_least(0),
    "learning_rate": _positive_finite,
    "ema_decay": _decay,
    "num_samples": _int_at_least(1),
    "num_val_samples": _int_at_least(1),
    "num_plot_samples": _int_at_least(0),
    "num_progress_samples": _int_at_least(0),
    "num_steps": _int_at_least(1),
    "num_sampling_steps": _int_at_least(1),
    "num_runs": _int_at_least(1),
    "num_seeds": _int_at_least(1),
    "log_every": _int_at_least(1),
    "eval_every": _int_at_least(0),
    "checkpoint_every": _int_at_least(0),
    "sample_every": _int_at_least(0),
    "keep_checkpoints": _int_at_least(1),
    "warmup_steps": _int_at_least(0),
    "weight_decay": _non_negative_finite,
    "clip_norm": _non_negative_finite,
    "max_atoms": _int_at_least(0),
    "max_train": _int_at_least(0),
    "max_valid": _int_at_least(0),
    "max_test": _int_at_least(0),
    "split_fractions": _fractions,
    "time_budget_s": _non_negative_finite,
    "budget_clock": _one_of("wall", "cpu"),
}


def flat_items(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """`(dotted key, value)` of every leaf of a (nested) ConfigDict."""
    for key, value in config.items():
        if hasattr(value, "items"):
            yield from flat_items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def check_config(config: Any) -> None:
    """Raises `ConfigError` naming the first value no run can use (see `RULES`).

    Also: `data.source` must be set when `data.dataset` is "molecules".
    """
    for key, value in flat_items(config):
        rule = RULES.get(key.rsplit(".", 1)[-1])
        if rule is None or value is None:
            continue
        valid = rule(value)
        if valid is not None:
            raise ConfigError(f"--config.{key}={value!r} is out of range; it must be {valid}.")
    data = config.get("data") if hasattr(config, "get") else None
    if data is not None and data.get("dataset") == "molecules" and not data.get("source"):
        raise ConfigError(
            "--config.data.source is empty; give a directory of .sdf/.xyz files, a "
            "multi-molecule .sdf, an .xyz file or an ASE .db "
            "(e.g. --config.data.source=ligands.sdf)."
        )


def read_data_source(config: Any) -> None:
    """Reads a `data.dataset = "molecules"` source now (filling in its elements and width).

    Raises:
      ConfigError: the source is missing, empty, of an unknown kind, holds no usable
        molecule, or (with `data.strict`) has an unreadable record.
    """
    data = config.get("data") if hasattr(config, "get") else None
    if data is None or data.get("dataset") != "molecules":
        return
    from experiments.qm9.input_pipeline import resolve_molecule_source

    try:
        resolve_molecule_source(config)
    except (OSError, ValueError, ImportError) as err:
        raise ConfigError(f"--config.data.source={data.source}: {err}") from err


# --------------------------------------------------------------------------------------
# Overrides


def _config_argument(argv: Sequence[str], flag: str = "config") -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{flag}="):
            return arg.split("=", 1)[1]
        if arg == f"--{flag}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def load_config_file(config_arg: str) -> Any:
    """`get_config([variant])` of a `path[:variant]` config argument, without overrides."""
    path, _, variant = config_arg.partition(":")
    spec = importlib.util.spec_from_file_location("_symdiff_cli_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()


def _overrides(argv: Sequence[str], flag: str = "config") -> list[tuple[str, str | None]]:
    out = []
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{flag}.") or arg.startswith(f"--no{flag}."):
            name, eq, value = arg.partition("=")
            key = name.split(".", 1)[1]
            if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
            out.append((key, value if eq or value else None))
    return out


def _type_problem(old: Any, value: str) -> str | None:
    """What `value` should be, when it cannot stand for the config's `old` value."""
    if isinstance(old, bool):
        ok = value.lower() in ("true", "false", "1", "0", "t", "f", "yes", "no")
        return None if ok else "true or false"
    try:
        if isinstance(old, int):
            int(value)
        elif isinstance(old, float):
            float(value)
    except ValueError:
        return "an integer" if isinstance(old, int) else "a number"
    return None


def check_overrides(argv: Sequence[str], default_config: str | None = None) -> None:
    """Raises `ConfigError` for an override of an unknown key or of the wrong type."""
    overrides = _overrides(argv)
    if not overrides:
        return
    config_arg = _config_argument(argv) or default_config
    if config_arg is None:
        return
    try:
        values = dict(flat_items(load_config_file(config_arg)))
    except Exception:  # the config file's own error is reported by the flag parser
        return
    sections = {k.rsplit(".", 1)[0] for k in values if "." in k}
    for key, value in overrides:
        if key not in values:
            if key in sections:
                continue  # a whole section, e.g. --config.model=...: left to ml_collections
            close = difflib.get_close_matches(key, list(values), n=3, cutoff=0.5)
            hint = ", ".join(close) if close else ", ".join(sorted(values)[:12]) + ", ..."
            raise ConfigError(
                f"--config.{key}={value}: {config_arg} has no key {key!r}. "
                f"Valid keys closest to it: {hint}."
            )
        old = values[key]
        problem = None if value is None else _type_problem(old, value)
        if problem is not None:
            raise ConfigError(
                f"--config.{key}={value!r} is not {problem} "
                f"(the config's value is {old!r}: {type(old).__name__})."
            )


# --------------------------------------------------------------------------------------
# The parser


class _DropTpuBackend(std_logging.Filter):
    def filter(self, record: std_logging.LogRecord) -> bool:
        return "Unable to initialize backend" not in record.getMessage()


def quiet_backend_probe() -> None:
    """Keeps JAX's "Unable to initialize backend 'tpu'" probe line out of the logs."""
    for name in ("jax._src.xla_bridge", "jax"):
        std_logging.getLogger(name).addFilter(_DropTpuBackend())
    from absl import logging

    logging.get_absl_handler().addFilter(_DropTpuBackend())


def fail(message: str) -> None:
    """Prints `message` as one line on stderr and exits with status 2."""
    prog = os.path.basename(sys.argv[0]) if sys.argv else "symdiff"
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(USAGE_EXIT)


def _flag_error(err: Exception) -> str:
    """One line of a flag error; of a traceback inside it (a config file's error) the last line."""
    lines = [line for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    head = lines[0]
    if "Traceback (most recent call last)" in str(err):
        head = head.split("Traceback (most recent call last)")[0] + lines[-1].strip()
    return head.replace("Could not parse flags: ", "")


def print_help(module: str, *, full: bool = False) -> None:
    """Prints the docstring of the tool's module and its flags (all flags with `full`)."""
    doc = (sys.modules[module].__doc__ or "").strip() if module in sys.modules else ""
    print(doc + "\n")
    print(flags.FLAGS.get_help() if full else flags.FLAGS.module_help(module))
    if not full:
        print("\n(--helpfull: the flags of every module)")


def make_parser(
    default_config: str | None = None, module: str = "__main__"
) -> Callable[[list[str]], list[str]]:
    """`flags_parser` for `absl.app.run`: see the module docstring.

    Args:
      default_config: the `--config` used when none is given (to check overrides).
      module: the tool's module (its docstring and flags make the `--help` text).
    """

    def parse(argv: list[str]) -> list[str]:
        quiet_backend_probe()
        if any(a in HELP_FLAGS for a in argv[1:]):
            print_help(module, full="--helpfull" in argv)
            sys.exit(0)
        config_arg = _config_argument(argv[1:])
        if config_arg is not None and not os.path.isfile(config_arg.partition(":")[0]):
            fail(
                f"--config={config_arg}: no such config file; give a path such as "
                "configs/qm9_symdiff.py:smoke."
            )
        try:
            check_overrides(argv[1:], default_config)
            rest = flags.FLAGS(argv)
        except ConfigError as err:
            fail(str(err))
        except Exception as err:  # absl flag errors and errors of the config file
            fail(_flag_error(err))
        if "config" in flags.FLAGS:
            try:
                check_config(flags.FLAGS["config"].value)
                read_data_source(flags.FLAGS["config"].value)
            except ConfigError as err:
                fail(str(err))
            except Exception as err:  # the config file failed to load
                fail(" ".join(str(err).split()))
        return rest

    return parse


def run(main: Callable[[list[str]], Any], default_config: str | None = None) -> None:
    """`absl.app.run(main)` with `make_parser`: the body of each tool's `cli()`."""
    app.run(main, flags_parser=make_parser(default_config, main.__module__))
