"""Animal-MNIST (PyPI animal-mnist 0.4), read from its data files without importing the package.

The package's loader imports tensorflow at import time, so its two files are read here instead: gzip
pickles (protocol 4, numpy 1.x) of one array each, the images uint8 [10000, 28, 28] (white silhouettes on
black; the zebras greyscale photographs with their stripes) and the labels int64 [10000], 1,000 per class,
sorted by class. The registry verifies each decoded pickle by its SHA-256 before it gets here; the pickles
are still read by load_array, an unpickler that can build numpy arrays and nothing else, so a file that
passed another registry's hash (an override) cannot run code.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from ganforge.errors import GanforgeError

try:  # numpy 2 keeps the array reconstructor in numpy._core; numpy 1 pickles name numpy.core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1
    from numpy.core.multiarray import _reconstruct

# every global a pickled numpy array needs (numpy 1 and 2 spell the reconstructor's module differently);
# nothing else: numpy holds callables that read files or run commands, so "anything from numpy" is not safe
NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
SIDE = 28
N_CLASSES = 10


class _NumpyOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return NUMPY_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused the global {module}.{name}: only numpy arrays are read "
                                         f"(allowed: {', '.join(f'{m}.{n}' for m, n in NUMPY_GLOBALS)})") \
                from None


def load_array(data: bytes, file: str) -> np.ndarray:
    """The numpy array pickled in `data`; a pickle that names any other global, or holds anything but one
    array of numbers (an object array included), is a GanforgeError naming `file`."""
    try:
        x = _NumpyOnly(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            MemoryError) as e:
        raise GanforgeError(f"{file}: not a pickled numpy array: {e}") from None
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "biu":
        what = f"a {x.dtype} array" if isinstance(x, np.ndarray) else f"a {type(x).__name__}"
        raise GanforgeError(f"{file}: holds {what}, not an array of integers")
    return x


def read_animals(images: bytes, labels: bytes, images_file: str, labels_file: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 1, 28, 28], labels int64 [N]) of the two decoded pickles."""
    x, y = load_array(images, images_file), load_array(labels, labels_file)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (SIDE, SIDE):
        raise GanforgeError(f"{images_file}: {x.dtype} {list(x.shape)}, not uint8 [N, {SIDE}, {SIDE}]")
    if y.shape != (len(x),) or len(y) and not (0 <= y.min() and y.max() < N_CLASSES):
        raise GanforgeError(f"{labels_file}: {list(y.shape)} labels for {len(x)} images, or labels outside "
                            f"0..{N_CLASSES - 1}")
    return np.ascontiguousarray(x[:, None]), y.astype(np.int64)
