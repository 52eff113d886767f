"""The K-quants (Q4_K_M, Q5_K_M, Q6_K): llama.cpp's own quantizer, through llama-cpp-python when installed.

Python has no K-quant writer that matches llama.cpp's choices (which tensors get more bits), so
these are made the way llama.cpp's users make them: write F16 with our writer, then run
`llama_model_quantize` on it. Without llama-cpp-python the choice says what it needs.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from ..errors import UserError

# --type -> (file name label, llama.cpp's llama_ftype, bytes per weight for estimates)
K_QUANTS: dict[str, tuple[str, int, float]] = {
    "q4_k_m": ("Q4_K_M", 15, 4.85 / 8),
    "q5_k_m": ("Q5_K_M", 17, 5.69 / 8),
    "q6_k": ("Q6_K", 18, 6.56 / 8),
}
NEEDS = "the K-quants need llama-cpp-python (pip install llama-cpp-python, or 'qlora-gui[llama]')"


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except (ImportError, OSError, RuntimeError):  # absent, or its library does not load here
        return False
    return True


def quantize_k(f16_file: Path, out_file: Path, key: str) -> Path:
    """llama.cpp's quantizer from an F16 GGUF to a K-quant one; the message says what failed."""
    if not llama_cpp_available():
        raise UserError(NEEDS)
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = K_QUANTS[key][1]
    params.nthread = os.cpu_count() or 1
    code = llama_cpp.llama_model_quantize(str(f16_file).encode(), str(out_file).encode(), ctypes.byref(params))
    if code != 0 or not out_file.is_file():
        raise UserError(f"llama.cpp's quantizer failed ({code}) making {out_file.name} from {f16_file.name}")
    return out_file
