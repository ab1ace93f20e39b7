"""Number formats: what each tensor of a deployment is stored and multiplied in.

:class:`DType` is a format and its bytes per element (block scales included);
:class:`Precision` is what a plan writes per tensor, :class:`Formats` the resolved set
(every default filled from ``model.dtype``). Sources: docs/cost-model.md ("Precision").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dagen.plan.fields import spec

__all__ = ["RATE_KEYS", "WIDER", "DType", "Formats", "Precision", "matmul_format"]

_RECORD = {"frozen": True, "slots": True, "kw_only": True}


class DType(enum.StrEnum):
    """Numeric format of a tensor (weights, activations, KV cache, messages)."""

    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    FP32 = "fp32"
    FP8_BLOCK = "fp8_block"
    """fp8 e4m3 with one fp32 scale per 128 × 128 block (DeepSeek-V3's weights)."""
    NVFP4 = "nvfp4"
    """4-bit e2m1 with one fp8 scale per 16 elements (NVIDIA Blackwell)."""
    MXFP4 = "mxfp4"
    """4-bit e2m1 with one e8m0 scale per 32 elements (OCP Microscaling)."""

    @property
    def nbytes(self) -> float:
        """Bytes per element, block scales included (docs/cost-model.md, "Precision")."""
        return _NBYTES[self.value]

    @property
    def math(self) -> str:
        """The ``peak_tflops`` key a matmul in this format runs at (fp8_block: fp8)."""
        return {"fp8_block": "fp8", "mxfp4": "fp4", "nvfp4": "fp4"}.get(self.value, self.value)


_NBYTES = {
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "fp32": 4.0,
    "fp8_block": 1.0 + 4 / (128 * 128),
    "nvfp4": 0.5 + 1 / 16,
    "mxfp4": 0.5 + 1 / 32,
}


WIDER = {
    "fp4": ("fp4", "fp8", "bf16", "fp16"),
    "fp8": ("fp8", "bf16", "fp16"),
    "bf16": ("bf16", "fp16"),
    "fp16": ("fp16", "bf16"),
    "fp32": ("fp32",),
}
"""Matmul formats from narrowest to widest: where a GPU lacks a rate, the next wider."""

RATE_KEYS = ("bf16", "fp16", "fp8", "fp4", "fp32")
"""Keys of ``hardware.peak_tflops``: the formats tensor cores have a rate for."""


@dataclass(**_RECORD)
class Precision:
    """Number formats per tensor; each defaults from ``model.dtype`` (see :meth:`resolve`)."""

    weights: DType | None = spec("Matmul weights; default model.dtype.", default=None)
    attention: DType | None = spec(
        "Attention projections' weights (Q, K, V and output; MLA's down- and "
        "up-projections); default the weights' format. NVIDIA's FP4 DeepSeek-R1 "
        "checkpoints keep attention in fp8 or bf16 and the FFN and experts in nvfp4.",
        default=None,
    )
    activations: DType | None = spec(
        "Activations between ops; default model.dtype when 16-bit, else bf16 (fp8 and fp4 "
        "checkpoints compute on bf16 activations).",
        default=None,
    )
    kv_cache: DType | None = spec(
        "KV cache; default the activations' format (vLLM kv_cache_dtype=auto).", default=None
    )
    dispatch: DType | None = spec(
        "MoE all-to-all dispatch payload; default the activations' format.", default=None
    )
    combine: DType | None = spec(
        "MoE all-to-all combine payload; default the activations' format.", default=None
    )

    def resolve(self, model_dtype: DType) -> Formats:
        """Every format filled in from ``model_dtype`` (the defaults above).

        >>> Precision(kv_cache=DType.FP8).resolve(DType.FP8).activations.value
        'bf16'
        """
        weights = self.weights or model_dtype
        wide = model_dtype if model_dtype.nbytes >= 2 else DType.BF16
        act = self.activations or wide
        return Formats(
            weights=weights, attention=self.attention or weights, activations=act,
            kv_cache=self.kv_cache or act,
            dispatch=self.dispatch or act, combine=self.combine or act,
        )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Formats:
    """The resolved format of every tensor (:meth:`Precision.resolve`)."""

    weights: DType
    attention: DType
    activations: DType
    kv_cache: DType
    dispatch: DType
    combine: DType

    @property
    def math(self) -> DType:
        """The format the FFN, expert and head matmuls run in (:func:`matmul_format`)."""
        return matmul_format(self.weights, self.activations)

    @property
    def attention_math(self) -> DType:
        """The format the attention projections run in (:func:`matmul_format`)."""
        return matmul_format(self.attention, self.activations)


def matmul_format(weights: DType, activations: DType) -> DType:
    """The format a matmul with ``weights`` multiplies in: the weights', except mxfp4
    weights beside 16-bit activations, which are widened before the multiply (W4A16, as
    gpt-oss's MXFP4 experts run in vLLM's and SGLang's Triton and Marlin kernels). W8A8
    and nvfp4 checkpoints quantise the activations on the fly to the weights' format
    (NVIDIA's NVFP4 recipe is W4A4: TensorRT-LLM's DeepSeek-R1 B200 blog, "DynamicQuant
    (BF16->NVFP4)").

    >>> matmul_format(DType.NVFP4, DType.BF16).value, matmul_format(DType.MXFP4, DType.BF16).value
    ('nvfp4', 'bf16')
    """
    if weights is DType.MXFP4 and activations.nbytes >= 2:
        return activations
    return weights
