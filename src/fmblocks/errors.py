"""One exception hierarchy for fmblocks.

Every error the library raises on bad input derives from `FmblocksError`, and also from the
built-in exception a caller would naturally catch (`ValueError`, `KeyError`, `FileNotFoundError`),
so `except ValueError` keeps working. Messages say what was wrong and what was expected.
"""


class FmblocksError(Exception):
    """Base class of every fmblocks error."""


class ConfigError(FmblocksError, ValueError):
    """A configuration value is invalid (e.g. d_model not divisible by n_heads)."""


class ShapeError(FmblocksError, ValueError):
    """A tensor has the wrong shape, dtype or rank for the operation."""


class UnknownNameError(FmblocksError, KeyError):
    """A registry was asked for a name it does not hold; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class TokenizerError(FmblocksError, ValueError):
    """Input a tokenizer cannot encode or decode (unknown token without <unk>, special token not allowed)."""


class CorruptFileError(FmblocksError, ValueError):
    """A file exists but is truncated, malformed or of another format/version."""


class DataError(FmblocksError, ValueError):
    """A dataset is empty, malformed or inconsistent with the model (e.g. sequence longer than the context)."""


class CheckpointError(FmblocksError, ValueError):
    """A checkpoint does not match the model configuration or cannot be read."""


class CorruptCheckpointError(CheckpointError, CorruptFileError):
    """A checkpoint file is truncated, malformed or of another format, or holds an impossible value."""


class WriteError(FmblocksError, OSError):
    """A file or directory could not be written (read-only, disk full, no permission); the message names it."""


class RunLockedError(FmblocksError, RuntimeError):
    """Another live process holds the lock of a run directory; the message names its PID."""


class NonFiniteError(FmblocksError, FloatingPointError):
    """A loss or gradient became NaN or infinite during training."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped at a step boundary on SIGINT/SIGTERM, after saving a checkpoint when it has a run directory.

    Deliberately a KeyboardInterrupt, not an FmblocksError: nothing went wrong, and code that lets
    Ctrl-C through keeps doing so. `signal` is the signal's number, `step` the last finished step,
    `checkpoint` the directory saved (None without one).
    """

    def __init__(self, message: str, *, signal: int, step: int, checkpoint: object = None) -> None:
        super().__init__(message)
        self.signal, self.step, self.checkpoint = signal, step, checkpoint
