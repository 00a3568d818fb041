"""CIFAR-10 python batches, read WITHOUT unpickling.

Each batch is a pickled dict {b"data": uint8 ndarray [N, 3072], b"labels": [N ints], ...}; `pickle.load`
would run whatever callables the stream names, so a tampered download could execute code. Instead a tiny
stack machine walks the opcodes (pickletools.genops only decodes, it never calls anything) and accepts just
what such a batch contains: containers, ints, strings, and the four globals numpy and Python use to
rebuild a uint8 array and bytes, each replaced by our own inert stand-in. Anything else is refused.
Handles both the original Python 2 files (protocol 2, str = bytes) and Python 3 re-pickles (protocols 2-4).
"""

from __future__ import annotations

import io
import pickletools

import numpy as np

from ganforge.errors import GanforgeError

# (module, name) -> the stand-in it becomes; numpy 2 moved numpy.core to numpy._core
_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("_codecs", "encode"): "encode",  # Python 3 protocol 2 writes bytes as _codecs.encode(text, "latin1")
}
_PUSH_CONST = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_IGNORED = {"PROTO", "FRAME"}


class _Global:
    def __init__(self, name: str):
        self.name = name


class _DType:
    def __init__(self, code: str):
        self.code = code


class _Array:
    """What numpy's _reconstruct returns before BUILD fills it in."""

    value: np.ndarray | None = None


class _Refused(Exception):
    pass


def _call(fn, args):
    if not isinstance(fn, _Global) or not isinstance(args, tuple):
        raise _Refused(f"call of {type(fn).__name__}")
    if (fn.name == "encode" and len(args) == 2 and isinstance(args[0], str)
            and args[1] in ("latin1", "latin-1")):
        return args[0].encode("latin-1")
    if fn.name == "dtype" and args and args[0] == "u1":
        return _DType("u1")
    if fn.name == "reconstruct" and args and isinstance(args[0], _Global) and args[0].name == "ndarray":
        return _Array()
    raise _Refused(f"{fn.name}{args!r:.60}")


def _build(obj, state) -> None:
    if isinstance(obj, _DType):
        return  # the state only carries byte order etc., meaningless for one-byte values
    if isinstance(obj, _Array) and isinstance(state, tuple) and len(state) == 5:
        _version, shape, dtype, fortran, raw = state
        if (isinstance(dtype, _DType) and isinstance(raw, bytes) and isinstance(shape, tuple)
                and all(isinstance(d, int) and d >= 0 for d in shape) and len(raw) == int(np.prod(shape))):
            obj.value = np.frombuffer(raw, dtype=np.uint8).reshape(shape, order="F" if fortran else "C")
            return
    raise _Refused(f"BUILD of {type(obj).__name__}")


def _pop_mark(stack: list, marks: list) -> list:
    start = marks.pop()
    items = stack[start:]
    del stack[start:]
    return items


def _resolve(value):
    return value.value if isinstance(value, _Array) else value


def safe_unpickle_batch(data: bytes, name: str = "batch") -> dict:
    """The dict a CIFAR batch pickles, keys as str, arrays as numpy; nothing in the stream is executed."""
    stack: list = []
    marks: list[int] = []
    memo: dict[int, object] = {}
    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(data)):
            n = op.name
            if n in _IGNORED:
                continue
            if n == "STOP":
                break
            if n in _PUSH_CONST:
                stack.append(_PUSH_CONST[n])
            elif n == "MARK":
                marks.append(len(stack))
            elif n == "EMPTY_DICT":
                stack.append({})
            elif n == "EMPTY_LIST":
                stack.append([])
            elif n in ("BININT", "BININT1", "BININT2", "LONG1"):
                stack.append(int(arg))
            elif n in ("BINSTRING", "SHORT_BINSTRING"):  # a Python 2 str: bytes, as encoding="bytes" gives
                stack.append(arg.encode("latin-1"))
            elif n in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
                stack.append(bytes(arg))
            elif n in ("BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"):
                stack.append(str(arg))
            elif n in ("BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif n == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif n in ("BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif n == "TUPLE":
                stack.append(tuple(_pop_mark(stack, marks)))
            elif n in ("TUPLE1", "TUPLE2", "TUPLE3"):
                k = int(n[-1])
                items = tuple(stack[-k:])
                del stack[-k:]
                stack.append(items)
            elif n == "APPEND" and isinstance(stack[-2], list):
                stack[-2].append(_resolve(stack.pop()))
            elif n == "APPENDS" and isinstance(stack[marks[-1] - 1], list):
                items = _pop_mark(stack, marks)
                stack[-1].extend(_resolve(v) for v in items)
            elif n == "SETITEM" and isinstance(stack[-3], dict):
                value, key = stack.pop(), stack.pop()
                stack[-1][key] = value
            elif n == "SETITEMS" and isinstance(stack[marks[-1] - 1], dict):
                items = _pop_mark(stack, marks)
                stack[-1].update(zip(items[::2], items[1::2], strict=True))
            elif n == "GLOBAL":
                module, _, qualname = arg.partition(" ")
                if (module, qualname) not in _GLOBALS:
                    raise _Refused(f"global {module}.{qualname}")
                stack.append(_Global(_GLOBALS[module, qualname]))
            elif n == "STACK_GLOBAL":
                qualname, module = stack.pop(), stack.pop()
                if (module, qualname) not in _GLOBALS:
                    raise _Refused(f"global {module}.{qualname}")
                stack.append(_Global(_GLOBALS[module, qualname]))
            elif n == "REDUCE":
                args = stack.pop()
                stack.append(_call(stack.pop(), args))
            elif n == "BUILD":
                state = stack.pop()
                _build(stack[-1], state)
            else:
                raise _Refused(f"opcode {n} at byte {pos}")
    except _Refused as e:
        raise GanforgeError(f"{name}: refused: not a plain CIFAR batch (unexpected {e})") from None
    except (ValueError, IndexError, KeyError, TypeError) as e:
        raise GanforgeError(f"{name}: corrupt pickle stream ({type(e).__name__}: {e})") from None
    if len(stack) != 1 or not isinstance(stack[0], dict):
        raise GanforgeError(f"{name}: not a CIFAR batch (the pickle does not hold one dict)")
    return {(k.decode("latin-1") if isinstance(k, bytes) else str(k)): _resolve(v)
            for k, v in stack[0].items()}


def read_batch(data: bytes, name: str, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 3, 32, 32], labels int64 [N]) of one batch file."""
    d = safe_unpickle_batch(data, name)
    x, y = d.get("data"), d.get("labels")
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise GanforgeError(f"{name}: 'data' is not a uint8 array [N, 3072]")
    if not isinstance(y, list) or len(y) != len(x) or not all(isinstance(v, int) for v in y):
        raise GanforgeError(f"{name}: 'labels' is not a list of {len(x)} ints")
    labels = np.asarray(y, dtype=np.int64)
    if len(labels) and not (0 <= labels.min() and labels.max() < n_classes):
        raise GanforgeError(f"{name}: labels outside 0..{n_classes - 1}")
    return x.reshape(-1, 3, 32, 32), labels  # rows are 1024 R, then G, then B values: already C, H, W
