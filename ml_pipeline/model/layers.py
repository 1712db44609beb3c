"""Custom Keras layers of the exported models: the parts of the transform Keras has no layer for.

Every layer here is pure TensorFlow, registered as ``ml_pipeline>Name`` so a
``.keras`` file loads anywhere this module has been imported (which
:func:`ml_pipeline.model.load_trained` does). Keras' own layers do the rest
(``StringLookup``, ``Normalization``, ``Discretization``, ``Hashing``,
``Embedding``).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

PACKAGE = "ml_pipeline"
PERIODS = ("hour_of_day", "day_of_week", "day_of_month", "month_of_year")
TOKEN_SEPARATORS = r"[^\p{L}\p{N}]+"  # the same RE2 pattern Transform tokenises with in DuckDB
CROSS_SEPARATOR = "\x1f"
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def civil_from_seconds(seconds: tf.Tensor) -> dict[str, tf.Tensor]:
    """Calendar fields (UTC) of int64 Unix seconds, with integer arithmetic only.

    Howard Hinnant's ``civil_from_days``: valid for any date of the proleptic
    Gregorian calendar, before 1970 too. Returns int64 tensors: ``year``,
    ``month`` (1-12), ``day`` (1-31), ``days_in_month``, ``hour`` (0-23) and
    ``weekday`` (Monday 0 … Sunday 6).
    """
    seconds = tf.cast(seconds, tf.int64)
    days = tf.math.floordiv(seconds, 86400)
    second_of_day = seconds - days * 86400
    z = days + 719468
    era = tf.math.floordiv(z, 146097)
    doe = z - era * 146097
    yoe = tf.math.floordiv(
        doe - tf.math.floordiv(doe, 1460) + tf.math.floordiv(doe, 36524) - tf.math.floordiv(doe, 146096), 365
    )
    doy = doe - (365 * yoe + tf.math.floordiv(yoe, 4) - tf.math.floordiv(yoe, 100))
    mp = tf.math.floordiv(5 * doy + 2, 153)
    day = doy - tf.math.floordiv(153 * mp + 2, 5) + 1
    month = tf.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + tf.cast(month <= 2, tf.int64)
    leap = tf.logical_and(
        tf.equal(tf.math.floormod(year, 4), 0),
        tf.logical_or(tf.not_equal(tf.math.floormod(year, 100), 0), tf.equal(tf.math.floormod(year, 400), 0)),
    )
    days_in_month = tf.gather(tf.constant(_DAYS_IN_MONTH, tf.int64), month - 1)
    days_in_month += tf.cast(tf.logical_and(tf.equal(month, 2), leap), tf.int64)
    return {
        "year": year,
        "month": month,
        "day": day,
        "days_in_month": days_in_month,
        "hour": tf.math.floordiv(second_of_day, 3600),
        "weekday": tf.math.floormod(days + 3, 7),  # 1970-01-01 was a Thursday
    }


def _period_positions(seconds: tf.Tensor, periods) -> list[tuple[tf.Tensor, tf.Tensor]]:
    """(position, period length) per period, both int64: position in 0 .. length-1."""
    fields = civil_from_seconds(seconds)
    out = []
    for period in periods:
        if period == "hour_of_day":
            out.append((fields["hour"], tf.fill(tf.shape(fields["hour"]), tf.constant(24, tf.int64))))
        elif period == "day_of_week":
            out.append((fields["weekday"], tf.fill(tf.shape(fields["weekday"]), tf.constant(7, tf.int64))))
        elif period == "day_of_month":
            out.append((fields["day"] - 1, fields["days_in_month"]))
        elif period == "month_of_year":
            out.append((fields["month"] - 1, tf.fill(tf.shape(fields["month"]), tf.constant(12, tf.int64))))
        else:
            raise ValueError(f"unknown period '{period}' (known: {', '.join(PERIODS)})")
    return out


@keras.saving.register_keras_serializable(package=PACKAGE)
class CyclicalTime(keras.layers.Layer):
    """int64 Unix seconds ``[batch]`` -> ``[batch, 2 * len(periods)]``: sin and cos of each period's position.

    Positions are whole units (hour 0-23, weekday Monday=0, day of month 0 ..
    days in that month - 1, month 0-11), each divided by its period length.
    """

    def __init__(self, periods, **kwargs):
        super().__init__(**kwargs)
        self.periods = list(periods)
        for period in self.periods:
            if period not in PERIODS:
                raise ValueError(f"unknown period '{period}' (known: {', '.join(PERIODS)})")

    def call(self, seconds):
        columns = []
        for position, length in _period_positions(seconds, self.periods):
            angle = 2.0 * math.pi * tf.cast(position, tf.float32) / tf.cast(length, tf.float32)
            columns += [tf.sin(angle), tf.cos(angle)]
        return tf.stack(columns, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape, 2 * len(self.periods))

    def get_config(self):
        return {**super().get_config(), "periods": self.periods}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CalendarKey(keras.layers.Layer):
    """int64 Unix seconds ``[batch]`` -> string ``[batch]`` naming the periods' positions (``"14:2"``); for crosses."""

    def __init__(self, periods, **kwargs):
        super().__init__(**kwargs)
        self.periods = list(periods)

    def call(self, seconds):
        parts = [tf.strings.as_string(position) for position, _ in _period_positions(seconds, self.periods)]
        return tf.strings.reduce_join(tf.stack(parts, axis=-1), axis=-1, separator=":")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "periods": self.periods}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TimestampBuckets(keras.layers.Layer):
    """int64 Unix seconds ``[batch]`` -> int64 bucket index ``[batch]`` for sorted boundaries (exact, float64)."""

    def __init__(self, boundaries, **kwargs):
        super().__init__(**kwargs)
        self.boundaries = [float(b) for b in boundaries]

    def call(self, seconds):
        values = tf.cast(seconds, tf.float64)
        if not self.boundaries:
            return tf.zeros_like(values, dtype=tf.int64)
        edges = tf.constant(self.boundaries, tf.float64)
        flat = tf.reshape(values, [-1])
        index = tf.searchsorted(edges, flat, side="right", out_type=tf.int64)
        return tf.reshape(index, tf.shape(values))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "boundaries": self.boundaries}


@keras.saving.register_keras_serializable(package=PACKAGE)
class NumericInput(keras.layers.Layer):
    """float32 ``[batch]`` -> float32 ``[batch, 1]`` (or ``[batch]``): optional ``log1p(max(x, 0))``, then
    missing values (NaN, ±inf) replaced by ``fill_value`` (given in the transformed scale)."""

    def __init__(self, log1p: bool = False, fill_value: float = 0.0, keepdims: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.log1p = bool(log1p)
        self.fill_value = float(fill_value)
        self.keepdims = bool(keepdims)

    def call(self, values):
        values = tf.cast(values, tf.float32)
        finite = tf.math.is_finite(values)
        if self.log1p:
            values = tf.math.log1p(tf.maximum(tf.where(finite, values, 0.0), 0.0))
        values = tf.where(finite, values, tf.constant(self.fill_value, tf.float32))
        return tf.expand_dims(values, -1) if self.keepdims else values

    def compute_output_shape(self, input_shape):
        return (*input_shape, 1) if self.keepdims else tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "log1p": self.log1p, "fill_value": self.fill_value, "keepdims": self.keepdims}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TextTokens(keras.layers.Layer):
    """string ``[batch]`` -> string ``[batch, max_tokens]``: lowercase word tokens, padded with ``""``."""

    def __init__(self, max_tokens: int, **kwargs):
        super().__init__(**kwargs)
        self.max_tokens = int(max_tokens)

    def call(self, text):
        lowered = tf.strings.lower(text, encoding="utf-8")
        spaced = tf.strings.regex_replace(lowered, TOKEN_SEPARATORS, " ")
        tokens = tf.strings.split(spaced)  # ragged; splitting on whitespace drops empty tokens
        return tokens.to_tensor(default_value="", shape=[None, self.max_tokens])

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.max_tokens)

    def get_config(self):
        return {**super().get_config(), "max_tokens": self.max_tokens}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedMean(keras.layers.Layer):
    """``[embeddings [batch, T, D], tokens [batch, T]]`` -> ``[batch, D]``: the mean over non-empty tokens
    (zeros for a value without tokens)."""

    def call(self, inputs):
        embeddings, tokens = inputs
        mask = tf.cast(tf.not_equal(tokens, ""), embeddings.dtype)[..., None]
        total = tf.reduce_sum(embeddings * mask, axis=-2)
        count = tf.reduce_sum(mask, axis=-2)
        return total / tf.maximum(count, 1.0)

    def compute_output_shape(self, input_shape):
        embeddings_shape = input_shape[0]
        return (embeddings_shape[0], embeddings_shape[-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class CrossKey(keras.layers.Layer):
    """A list of ``[batch]`` tensors (strings or integers) -> one string ``[batch]``: the values joined, to hash."""

    def call(self, inputs):
        parts = [value if value.dtype == tf.string else tf.strings.as_string(value) for value in inputs]
        return tf.strings.join(parts, separator=CROSS_SEPARATOR)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package=PACKAGE)
class InverseTargetTransform(keras.layers.Layer):
    """The rating head's output ``[batch, 1]`` in the transformed scale -> ``[batch]`` in the target's units.

    Undoes the configured transforms in reverse order where they can be
    undone: ``scale`` divides by the factor, ``log1p`` applies ``expm1``;
    ``clip`` is not invertible and is left as it is.
    """

    def __init__(self, transforms=(), **kwargs):
        super().__init__(**kwargs)
        self.transforms = [dict(t) for t in transforms]

    def call(self, values):
        values = tf.squeeze(tf.cast(values, tf.float32), axis=-1)
        for transform in reversed(self.transforms):
            if transform["op"] == "scale":
                values = values / float(transform["factor"])
            elif transform["op"] == "log1p":
                values = tf.math.expm1(tf.minimum(values, 80.0))
        return values

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def get_config(self):
        return {**super().get_config(), "transforms": self.transforms}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PairInteraction(keras.layers.Layer):
    """``concat(buyer, product)`` ``[batch, 2D]`` -> ``[batch, 3D]``: the two embeddings and their elementwise
    product (without their last, bias, dimension when ``bias_slot``). A head over the concatenation alone learns little more than biases (an MLP approximates a dot
    product poorly); with the product, even a lone ``Dense(1)`` is a weighted matrix factorisation."""

    def __init__(self, bias_slot: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.bias_slot = bool(bias_slot)  # each embedding ends in the product bias' slot: left out

    def call(self, pair):
        buyer, product = tf.split(pair, 2, axis=-1)
        if self.bias_slot:
            buyer, product = buyer[..., :-1], product[..., :-1]
        return tf.concat([buyer, product, buyer * product], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], (input_shape[-1] // 2 - int(self.bias_slot)) * 3)

    def get_config(self):
        return {**super().get_config(), "bias_slot": self.bias_slot}


@keras.saving.register_keras_serializable(package=PACKAGE)
class AppendOne(keras.layers.Layer):
    """``[batch, D]`` -> ``[batch, D + 1]``: a constant 1 appended, the query's side of the product bias
    (its dot product with the candidate's last dimension adds that product's bias to the score)."""

    def call(self, x):
        return tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)


CUSTOM_OBJECTS = {
    cls.__name__: cls
    for cls in (
        CyclicalTime,
        CalendarKey,
        TimestampBuckets,
        NumericInput,
        TextTokens,
        MaskedMean,
        CrossKey,
        InverseTargetTransform,
        PairInteraction,
        AppendOne,
    )
}
