//! Physical (or raw) signal values to a frame, as cantools' `Message.encode`.

use crate::frame::{CanFrame, FrameKind, MAX_DATA_LEN};

use super::decoder::in_ranges;
use super::plan::RawKind;
use super::{CompiledMessage, CompiledSignal, Decoder, EncodeError, MessageKey, RawValue};

/// How strictly to encode (cantools' `strict` and `padding` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Refuse values outside `[minimum, maximum]` (with cantools' tolerance of `|factor| * 1e-6`,
    /// and except raw values that have a value-table label), and signals given that this
    /// multiplexing does not use. Missing signals and raw values that do not fit are always
    /// errors.
    pub strict: bool,
    /// Set the bits no encoded signal covers to 1 (cantools' `padding=True`); otherwise 0.
    pub padding: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { strict: true, padding: false }
    }
}

#[derive(Clone, Copy)]
enum Input {
    Physical(f64),
    Raw(RawValue),
}

impl Decoder {
    /// Encodes physical values, by signal index, into a frame of the message's id and length
    /// (a CAN FD frame for FD messages). Every signal of the active multiplexing must be given,
    /// including the multiplexors, whose values choose which multiplexed signals are written.
    ///
    /// Physical to raw is cantools' `numeric_scaled_to_raw`: `(value - offset) / factor`, rounded
    /// half to even for integer signals; float signals store the quotient (`Float32` rounded to
    /// nearest `f32`; a finite value beyond `f32` is refused, as cantools does). Encoding allocates a few
    /// small scratch vectors; it is not meant for a per-frame hot path.
    pub fn encode(
        &self,
        key: MessageKey,
        values: &[(usize, f64)],
        options: &EncodeOptions,
    ) -> Result<CanFrame, EncodeError> {
        self.message(key).encode(values, options)
    }

    /// [`Decoder::encode`] with signals named.
    pub fn encode_by_name(
        &self,
        key: MessageKey,
        values: &[(&str, f64)],
        options: &EncodeOptions,
    ) -> Result<CanFrame, EncodeError> {
        self.message(key).encode_by_name(values, options)
    }

    /// Encodes raw values (cantools' `scaling=False`), by signal index.
    pub fn encode_raw(
        &self,
        key: MessageKey,
        values: &[(usize, RawValue)],
        options: &EncodeOptions,
    ) -> Result<CanFrame, EncodeError> {
        self.message(key).encode_raw(values, options)
    }
}

impl CompiledMessage {
    /// See [`Decoder::encode`].
    pub fn encode(
        &self,
        values: &[(usize, f64)],
        options: &EncodeOptions,
    ) -> Result<CanFrame, EncodeError> {
        let mut given = vec![None; self.signals.len()];
        for &(i, v) in values {
            *given.get_mut(i).ok_or_else(|| self.bad_index(i))? = Some(Input::Physical(v));
        }
        self.encode_inputs(&given, options)
    }

    /// See [`Decoder::encode_by_name`].
    pub fn encode_by_name(
        &self,
        values: &[(&str, f64)],
        options: &EncodeOptions,
    ) -> Result<CanFrame, EncodeError> {
        let mut given = vec![None; self.signals.len()];
        for &(name, v) in values {
            let (i, _) = self.signal(name).ok_or_else(|| EncodeError::UnknownSignal {
                message: self.name.clone(),
                id: self.id,
                signal: name.to_owned(),
            })?;
            if let Some(g) = given.get_mut(i) {
                *g = Some(Input::Physical(v));
            }
        }
        self.encode_inputs(&given, options)
    }

    /// See [`Decoder::encode_raw`].
    pub fn encode_raw(
        &self,
        values: &[(usize, RawValue)],
        options: &EncodeOptions,
    ) -> Result<CanFrame, EncodeError> {
        let mut given = vec![None; self.signals.len()];
        for &(i, v) in values {
            *given.get_mut(i).ok_or_else(|| self.bad_index(i))? = Some(Input::Raw(v));
        }
        self.encode_inputs(&given, options)
    }

    fn bad_index(&self, index: usize) -> EncodeError {
        EncodeError::BadSignalIndex { message: self.name.clone(), id: self.id, index }
    }

    fn encode_inputs(
        &self,
        given: &[Option<Input>],
        options: &EncodeOptions,
    ) -> Result<CanFrame, EncodeError> {
        let n = self.signals.len();
        let mut used = vec![false; n];
        let mut mux: Vec<Option<i128>> = vec![None; n];
        let mut buf = [0u8; MAX_DATA_LEN];
        let mut covered = [0u8; MAX_DATA_LEN];
        for &i in &self.order {
            let i = usize::from(i);
            let Some(s) = self.signals.get(i) else { continue };
            let Some(plan) = s.plan else { continue };
            if let Some((sw, ranges)) = &s.condition {
                if !mux.get(*sw).copied().flatten().is_some_and(|m| in_ranges(m, ranges)) {
                    continue;
                }
            }
            let Some(input) = given.get(i).copied().flatten() else {
                return Err(EncodeError::MissingSignal {
                    message: self.name.clone(),
                    id: self.id,
                    signal: s.name.clone(),
                });
            };
            if let Some(u) = used.get_mut(i) {
                *u = true;
            }
            let raw = self.to_raw(s, plan.kind, &plan.conversion, input)?;
            if s.is_multiplexor {
                // cantools: `int(value)` of the given value (physical, or raw without scaling).
                let given_value = match input {
                    Input::Physical(v) => v,
                    Input::Raw(r) => r.as_f64(),
                };
                let number = match input {
                    Input::Raw(RawValue::Int(i)) => Some(i128::from(i)),
                    Input::Raw(RawValue::UInt(u)) => Some(i128::from(u)),
                    _ => given_value.is_finite().then_some(given_value.trunc() as i128),
                };
                if !s.mux_known.is_empty() && !number.is_some_and(|m| in_ranges(m, &s.mux_known)) {
                    return Err(EncodeError::InvalidMuxValue {
                        message: self.name.clone(),
                        id: self.id,
                        signal: s.name.clone(),
                        value: given_value.to_string(),
                    });
                }
                if let Some(m) = mux.get_mut(i) {
                    *m = number;
                }
            }
            if options.strict {
                let scaled = match input {
                    Input::Physical(v) => v,
                    Input::Raw(r) => plan.conversion.physical(r),
                };
                self.check_range(s, raw, scaled, plan.conversion.factor())?;
            }
            let bits = plan.raw_bits(raw).ok_or_else(|| EncodeError::RawOverflow {
                message: self.name.clone(),
                id: self.id,
                signal: s.name.clone(),
                raw: raw.to_string(),
                length: s.length,
            })?;
            plan.bits.insert(&mut buf, bits);
            plan.bits.insert(&mut covered, u64::MAX);
        }
        if options.strict {
            let unused: Vec<String> = given
                .iter()
                .zip(&used)
                .zip(&self.signals)
                .filter(|((g, u), _)| g.is_some() && !**u)
                .map(|(_, s)| s.name.clone())
                .collect();
            if !unused.is_empty() {
                return Err(EncodeError::UnusedSignals {
                    message: self.name.clone(),
                    id: self.id,
                    signals: unused,
                });
            }
        }
        let len = usize::from(self.length).min(MAX_DATA_LEN);
        if options.padding {
            for (b, c) in buf.iter_mut().zip(covered).take(len) {
                *b |= !c;
            }
        }
        let (kind, kind_name) = if self.frame_format.is_fd() {
            (FrameKind::Fd { brs: true, esi: false }, "CAN FD")
        } else {
            (FrameKind::Data, "classic CAN")
        };
        CanFrame::new(self.id, kind, buf.get(..len).unwrap_or(&[])).map_err(|_| {
            EncodeError::FrameLength {
                message: self.name.clone(),
                id: self.id,
                length: usize::from(self.length),
                kind: kind_name,
            }
        })
    }

    /// cantools' `numeric_scaled_to_raw` (or the raw value as given), rounding half to even.
    fn to_raw(
        &self,
        s: &CompiledSignal,
        kind: RawKind,
        conversion: &super::plan::Conversion,
        input: Input,
    ) -> Result<RawValue, EncodeError> {
        let unrounded = match input {
            Input::Physical(v) => {
                // Float signals take any value, infinities and NaN included (as cantools).
                let r = conversion.raw_unrounded(v);
                if kind.is_float() {
                    return Ok(RawValue::Float(r));
                }
                if !v.is_finite() {
                    return Err(self.not_finite(s, v));
                }
                r
            }
            Input::Raw(RawValue::Float(f)) => {
                if kind.is_float() {
                    return Ok(RawValue::Float(f));
                }
                f
            }
            Input::Raw(r) => {
                if kind.is_float() {
                    return Ok(RawValue::Float(r.as_f64()));
                }
                return Ok(r);
            }
        };
        if !unrounded.is_finite() {
            return Err(self.not_finite(s, unrounded));
        }
        let r = unrounded.round_ties_even();
        let overflow = || EncodeError::RawOverflow {
            message: self.name.clone(),
            id: self.id,
            signal: s.name.clone(),
            raw: r.to_string(),
            length: s.length,
        };
        if !(-9.3e18..=1.9e19).contains(&r) {
            return Err(overflow());
        }
        let wide = r as i128;
        match kind {
            RawKind::Signed => i64::try_from(wide).map(RawValue::Int).map_err(|_| overflow()),
            _ => u64::try_from(wide).map(RawValue::UInt).map_err(|_| overflow()),
        }
    }

    fn not_finite(&self, s: &CompiledSignal, value: f64) -> EncodeError {
        EncodeError::NotFinite {
            message: self.name.clone(),
            id: self.id,
            signal: s.name.clone(),
            value,
        }
    }

    fn check_range(
        &self,
        s: &CompiledSignal,
        raw: RawValue,
        scaled: f64,
        factor: f64,
    ) -> Result<(), EncodeError> {
        if s.label(&raw).is_some() && !matches!(raw, RawValue::Float(f) if f.fract() != 0.0) {
            return Ok(());
        }
        let tolerance = factor.abs() * 1e-6;
        let below = s.minimum.is_some_and(|min| scaled < min - tolerance);
        let above = s.maximum.is_some_and(|max| scaled > max + tolerance);
        if below || above {
            return Err(EncodeError::OutOfRange {
                message: self.name.clone(),
                id: self.id,
                signal: s.name.clone(),
                value: scaled,
                minimum: s.minimum.unwrap_or(f64::NEG_INFINITY),
                maximum: s.maximum.unwrap_or(f64::INFINITY),
            });
        }
        Ok(())
    }
}
