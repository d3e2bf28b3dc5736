"""Differentiable physics helpers in TensorFlow: translation, patch extraction and
reassembly by position, pad-and-diffract, and flat <-> channel reshapes.

Glossary: ``N`` patch side (pixels); ``C = gridsize**2`` patterns per sample; ``M`` side of the
reassembly canvas (``padded_size``). Images are ``(B, H, W, K)``; translations are ``(B, 2)``
ordered ``(row, col)`` in pixels; positions/offsets are ``(B, 1, 2, C)``.

Translation convention:
``translate_core(images, t)[b, y, x] == images[b, y - t[b, 0], x - t[b, 1]]``,
with bilinear interpolation and zeros outside the image, so a positive ``t`` moves content
down and right.

Every function takes its sizes as explicit arguments; nothing here reads ``params.cfg``.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = [
    "translate_core",
    "translate",
    "flat_to_channel",
    "channel_to_flat",
    "combine_complex",
    "pad_patches",
    "crop_center",
    "diffract",
    "pad_and_diffract",
    "extract_patches_position",
    "reassemble_patches",
    "support_mask",
]

_INTERPOLATIONS = ("bilinear", "nearest")


def _check_translations(images, translations):
    """Return ``translations`` repeated to the image batch: ``B`` or ``B*C`` images allowed."""
    n_img = tf.shape(images)[0]
    n_tr = tf.shape(translations)[0]
    tf.debugging.assert_equal(
        n_img % n_tr, 0,
        message="translate_core: image batch must be a multiple of the translation batch")
    reps = n_img // n_tr
    # Translation b applies to images b*C ... b*C + C - 1 (C consecutive images).
    return tf.repeat(translations, reps, axis=0)


def _translate_projective(images, translations, interpolation):
    """Non-XLA path: ``ImageProjectiveTransformV3`` (fast on CPU, not XLA-compilable)."""
    ty = translations[:, 0]
    tx = translations[:, 1]
    ones = tf.ones_like(tx)
    zeros = tf.zeros_like(tx)
    # Output pixel (x, y) samples the input at (x - tx, y - ty).
    transforms = tf.stack([ones, zeros, -tx, zeros, ones, -ty, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=tf.constant(0.0, images.dtype),
        interpolation=interpolation.upper(),
        fill_mode="CONSTANT",
    )
    # The op's output shape is a tensor, so its static shape is lost; a translation keeps the
    # shape of its input (static where the input's is), which later layers rely on.
    return tf.ensure_shape(out, images.shape)


def _dim(x, axis):
    """Size of ``x`` along ``axis``: the static int when known, else a scalar tensor (shapes
    relaxed by Keras/tf.function retracing are ``None``)."""
    size = x.shape[axis]
    return size if size is not None else tf.shape(x)[axis]


def _shift_axis(images, shift, axis, interpolation):
    """Shift ``images`` (B, H, W, K) by ``shift`` (B,) pixels along ``axis`` (1 or 2) with
    linear (or nearest) interpolation and zero fill, using gathers only (XLA-friendly)."""
    size = _dim(images, axis)
    dtype = images.dtype
    coord = tf.cast(tf.range(size), dtype)[None, :] - shift[:, None]  # (B, size) source coord
    if interpolation == "nearest":
        # Round half away from the centre the same way ImageProjectiveTransform does.
        idx = tf.cast(tf.floor(coord + 0.5), tf.int32)
        valid = tf.cast((idx >= 0) & (idx < size), dtype)
        out = tf.gather(images, tf.clip_by_value(idx, 0, size - 1), axis=axis, batch_dims=1)
        return out * _expand_weight(valid, axis)
    lo = tf.floor(coord)
    frac = coord - lo
    i0 = tf.cast(lo, tf.int32)
    i1 = i0 + 1
    w0 = (1.0 - frac) * tf.cast((i0 >= 0) & (i0 < size), dtype)
    w1 = frac * tf.cast((i1 >= 0) & (i1 < size), dtype)
    g0 = tf.gather(images, tf.clip_by_value(i0, 0, size - 1), axis=axis, batch_dims=1)
    g1 = tf.gather(images, tf.clip_by_value(i1, 0, size - 1), axis=axis, batch_dims=1)
    return g0 * _expand_weight(w0, axis) + g1 * _expand_weight(w1, axis)


def _expand_weight(w, axis):
    """(B, size) weights broadcastable against (B, H, W, K) along ``axis``."""
    return w[:, :, None, None] if axis == 1 else w[:, None, :, None]


def _translate_gather(images, translations, interpolation):
    """XLA path: bilinear translation as two separable 1-D gathers (rows, then columns)."""
    out = _shift_axis(images, translations[:, 0], 1, interpolation)
    return _shift_axis(out, translations[:, 1], 2, interpolation)


def translate_core(images, translations, interpolation="bilinear", use_xla_workaround=False):
    """Translate each image by its (row, col) shift with zero fill.

    Args:
        images: ``(B, H, W, K)`` or ``(B*C, H, W, K)`` float32 or complex64 tensor.
        translations: ``(B, 2)`` float32 shifts in pixels, ``(row, col)``. For ``B*C`` images,
            translation ``b`` applies to the ``C`` consecutive images ``b*C ... b*C+C-1``.
        interpolation: ``"bilinear"`` or ``"nearest"``.
        use_xla_workaround: True uses the gather-based path, which compiles under XLA
            (``tf.function(jit_compile=True)``); False uses ``ImageProjectiveTransformV3``.
            Both give the same result to float32 precision.

    Returns:
        Tensor of the shape and dtype of ``images``.
    """
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise ValueError(f"images must be (B, H, W, K); got shape {images.shape}")
    translations = tf.convert_to_tensor(translations)
    if translations.shape.rank != 2 or translations.shape[-1] != 2:
        raise ValueError(f"translations must be (B, 2); got shape {translations.shape}")
    if images.dtype.is_complex:
        real_dtype = images.dtype.real_dtype
        k = images.shape[-1]
        stacked = tf.concat([tf.math.real(images), tf.math.imag(images)], axis=-1)
        moved = translate_core(stacked, tf.cast(translations, real_dtype), interpolation,
                               use_xla_workaround)
        return tf.complex(moved[..., :k], moved[..., k:])
    translations = tf.cast(translations, images.dtype)
    translations = _check_translations(images, translations)
    if use_xla_workaround:
        return _translate_gather(images, translations, interpolation)
    return _translate_projective(images, translations, interpolation)


def translate(images, translations, use_xla=False):
    """Bilinear :func:`translate_core` (PtychoPINN's ``translate``)."""
    return translate_core(images, translations, "bilinear", use_xla_workaround=use_xla)


def flat_to_channel(images, C):
    """``(B*C, H, W, 1)`` -> ``(B, H, W, C)``; image ``b*C + c`` becomes channel ``c`` of ``b``."""
    shape = tf.shape(images)
    x = tf.reshape(images, (-1, C, shape[1], shape[2]))
    return tf.transpose(x, (0, 2, 3, 1))


def channel_to_flat(images):
    """``(B, H, W, C)`` -> ``(B*C, H, W, 1)``, the inverse of :func:`flat_to_channel`."""
    shape = tf.shape(images)
    x = tf.transpose(images, (0, 3, 1, 2))
    return tf.reshape(x, (-1, shape[1], shape[2], 1))


def combine_complex(amplitude, phase):
    """``amplitude * exp(i * phase)`` as complex64; both float32 of one shape."""
    amplitude = tf.cast(amplitude, tf.float32)
    phase = tf.cast(phase, tf.float32)
    return tf.complex(amplitude * tf.cos(phase), amplitude * tf.sin(phase))


def pad_patches(images, pad):
    """Zero-pad ``(B, H, W, K)`` by ``pad`` pixels on every side."""
    return tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])


def crop_center(images, size):
    """The centred ``size x size`` window of ``(B, H, W, K)`` (top-left at ``(H - size) // 2``)."""
    h, w = _dim(images, 1), _dim(images, 2)
    top, left = (h - size) // 2, (w - size) // 2
    return images[:, top:top + size, left:left + size, :]


def support_mask(N, pad_object=True):
    """``(1, N, N, 1)`` float32: 1 on the region the model predicts (central N/2 when
    ``pad_object``, else the whole patch)."""
    if not pad_object:
        return tf.ones((1, N, N, 1), tf.float32)
    q = N // 4
    return pad_patches(tf.ones((1, N - 2 * q, N - 2 * q, 1), tf.float32), q)


def diffract(exit_waves):
    """Far-field amplitude ``|fftshift(fft2(psi, norm='ortho'))|`` of each channel.

    Args:
        exit_waves: ``(B, N, N, C)`` complex64 exit waves ``probe * object``.
    Returns:
        ``(B, N, N, C)`` float32 amplitudes, zero frequency at ``(N//2, N//2)``; Parseval holds:
        ``sum |out|**2 == sum |psi|**2`` per pattern.
    """
    psi = tf.transpose(tf.cast(exit_waves, tf.complex64), (0, 3, 1, 2))  # (B, C, N, N)
    n = tf.cast(tf.shape(psi)[-1] * tf.shape(psi)[-2], tf.float32)
    far = tf.signal.fftshift(tf.signal.fft2d(psi), axes=(-2, -1))
    amp = tf.abs(far) / tf.sqrt(n)
    return tf.transpose(amp, (0, 2, 3, 1))


def pad_and_diffract(object_region, pad):
    """Zero-pad the ``(B, n, n, C)`` complex exit wave by ``pad`` on each side, then
    :func:`diffract`: PtychoPINN's oversampling step (``n = N/2``, ``pad = N/4`` gives ``N``)."""
    return diffract(pad_patches(object_region, pad))


def _offsets_to_translations(offsets):
    """``(B, 1, 2, C)`` -> ``(B*C, 2)`` in the order of :func:`channel_to_flat`."""
    o = tf.transpose(offsets[:, 0, :, :], (0, 2, 1))  # (B, C, 2)
    return tf.reshape(o, (-1, 2))


def extract_patches_position(canvas, offsets, N, use_xla=False):
    """Cut C patches of side ``N`` from each canvas at their offsets from the canvas centre.

    Args:
        canvas: ``(B, M, M, 1)`` float32 or complex64, centred on the group's mean position.
        offsets: ``(B, 1, 2, C)`` float32 offsets ``(row, col)`` of the C patch centres relative
            to the canvas centre ``(M//2, M//2)``.
        N: patch side.
    Returns:
        ``(B, N, N, C)``: patch ``c`` holds canvas pixels around ``centre + offsets[..., c]``.
    """
    C = offsets.shape[-1]
    if C is None:
        raise ValueError(f"offsets must have a static channel count C; got {offsets.shape}")
    M = _dim(canvas, 1)
    if canvas.shape[-1] != 1:
        raise ValueError(f"canvas must be (B, M, M, 1); got {canvas.shape}")
    if isinstance(M, int) and M < N:
        raise ValueError(f"canvas side {M} is smaller than the patch side N={N}")
    tiled = tf.repeat(canvas, C, axis=0)  # (B*C, M, M, 1), image b*C+c for patch c
    moved = translate_core(tiled, -_offsets_to_translations(offsets), use_xla_workaround=use_xla)
    top = M // 2 - N // 2
    patches = moved[:, top:top + N, top:top + N, :]
    return flat_to_channel(patches, C)


def reassemble_patches(patches, offsets, padded_size, pad_object=True, use_xla=False):
    """Average C patches onto one canvas, each placed at its offset from the canvas centre.

    Args:
        patches: ``(B, N, N, C)`` complex64 (or float32) object patches.
        offsets: ``(B, 1, 2, C)`` float32 offsets ``(row, col)`` from the canvas centre.
        padded_size: canvas side ``M >= N``.
        pad_object: only the central ``N/2`` of each patch carries object (see
            :func:`support_mask`); overlaps are normalised by the summed support.
    Returns:
        ``(B, M, M, 1)`` canvas; zero where no patch lands.
    """
    N = patches.shape[1]
    M = int(padded_size)
    if M < N:
        raise ValueError(f"padded_size {M} is smaller than the patch side N={N}")
    lo = M // 2 - N // 2
    pad = [[0, 0], [lo, M - N - lo], [lo, M - N - lo], [0, 0]]
    flat = tf.pad(channel_to_flat(patches), pad)  # (B*C, M, M, 1)
    C = patches.shape[-1]
    shifts = _offsets_to_translations(offsets)
    mask = tf.pad(support_mask(N, pad_object), pad)
    masks = tf.repeat(mask, tf.shape(flat)[0], axis=0)
    moved = translate_core(flat * tf.cast(masks, flat.dtype), shifts, use_xla_workaround=use_xla)
    moved_mask = translate_core(masks, shifts, use_xla_workaround=use_xla)
    total = tf.reduce_sum(flat_to_channel(moved, C), axis=-1, keepdims=True)
    norm = tf.reduce_sum(flat_to_channel(moved_mask, C), axis=-1, keepdims=True)
    inv = tf.where(norm > 1e-3, 1.0 / tf.maximum(norm, 1e-3), 0.0)
    return total * tf.cast(inv, total.dtype)
