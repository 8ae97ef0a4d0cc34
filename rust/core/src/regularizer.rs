//! Weight penalties added to the loss (note 002 "Regularización", note 004), with Keras'
//! semantics for L1 and L2:
//!
//! - `L1(l1)`: `l1 sum |w|`, gradient `l1 sign(w)`
//! - `L2(l2)`: `l2 sum w^2`, gradient `2 l2 w`
//! - `L1L2(l1, l2)`: both
//! - `Lp(p, factor)`, the notes' "Lm" penalty: `factor / p sum |w|^p`, gradient
//!   `factor sign(w) |w|^(p - 1)` (note 002)

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Regularizer {
    L1 {
        #[serde(default = "default_factor")]
        l1: f32,
    },
    L2 {
        #[serde(default = "default_factor")]
        l2: f32,
    },
    L1l2 {
        #[serde(default)]
        l1: f32,
        #[serde(default)]
        l2: f32,
    },
    Lp {
        p: f32,
        #[serde(default = "default_factor")]
        factor: f32,
    },
}

/// Reads a regularizer as a layer's `get_config` holds it: Keras' serialized form
/// (`{"class_name": "L2", "config": {"l2": 0.01}}`), the engine's (`{"name": "l2", "l2": 0.01}`)
/// or `null`.
pub fn keras_or_engine<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Regularizer>, D::Error> {
    use serde::de::Error;
    use serde_json::Value;
    let value = Value::deserialize(d)?;
    let value = match value {
        Value::Null => return Ok(None),
        Value::Object(mut map) if map.contains_key("class_name") => {
            let class = map.remove("class_name").unwrap_or_default();
            let name = match class.as_str() {
                Some("L1") => "l1",
                Some("L2") => "l2",
                Some("L1L2") => "l1l2",
                Some("Lp") => "lp",
                _ => return Err(D::Error::custom(format!("unknown regularizer class {class}"))),
            };
            let mut spec = match map.remove("config") {
                Some(Value::Object(config)) => config,
                None | Some(Value::Null) => serde_json::Map::new(),
                Some(other) => return Err(D::Error::custom(format!("regularizer config must be a map; got {other}"))),
            };
            spec.insert("name".into(), Value::String(name.into()));
            Value::Object(spec)
        }
        other => other,
    };
    serde_json::from_value(value).map(Some).map_err(D::Error::custom)
}

fn default_factor() -> f32 {
    0.01
}

#[inline]
fn sign(w: f32) -> f32 {
    if w > 0.0 {
        1.0
    } else if w < 0.0 {
        -1.0
    } else {
        0.0
    }
}

impl Regularizer {
    pub fn validate(&self) -> Result<()> {
        let ok = |v: f32| v.is_finite() && v >= 0.0;
        match *self {
            Regularizer::L1 { l1 } if !ok(l1) => Err(invalid(format!("L1: factor must be >= 0; got {l1}"))),
            Regularizer::L2 { l2 } if !ok(l2) => Err(invalid(format!("L2: factor must be >= 0; got {l2}"))),
            Regularizer::L1l2 { l1, l2 } if !ok(l1) || !ok(l2) => {
                Err(invalid(format!("L1L2: factors must be >= 0; got l1={l1}, l2={l2}")))
            }
            Regularizer::Lp { p, factor } if !(p.is_finite() && p >= 1.0 && ok(factor)) => {
                Err(invalid(format!("Lp: need p >= 1 and factor >= 0; got p={p}, factor={factor}")))
            }
            _ => Ok(()),
        }
    }

    /// The penalty of the weights `w`.
    pub fn penalty(&self, w: &[f32]) -> f64 {
        let sum = |f: &dyn Fn(f64) -> f64| w.iter().map(|&v| f(v as f64)).sum::<f64>();
        match *self {
            Regularizer::L1 { l1 } => l1 as f64 * sum(&|v| v.abs()),
            Regularizer::L2 { l2 } => l2 as f64 * sum(&|v| v * v),
            Regularizer::L1l2 { l1, l2 } => l1 as f64 * sum(&|v| v.abs()) + l2 as f64 * sum(&|v| v * v),
            Regularizer::Lp { p, factor } => factor as f64 / p as f64 * sum(&|v| v.abs().powf(p as f64)),
        }
    }

    /// Adds the penalty's gradient to `g`.
    pub fn add_gradient(&self, w: &[f32], g: &mut [f32]) {
        match *self {
            Regularizer::L1 { l1 } => g.iter_mut().zip(w).for_each(|(g, &w)| *g += l1 * sign(w)),
            Regularizer::L2 { l2 } => g.iter_mut().zip(w).for_each(|(g, &w)| *g += 2.0 * l2 * w),
            Regularizer::L1l2 { l1, l2 } => g.iter_mut().zip(w).for_each(|(g, &w)| *g += l1 * sign(w) + 2.0 * l2 * w),
            Regularizer::Lp { p, factor } => {
                g.iter_mut().zip(w).for_each(|(g, &w)| *g += factor * sign(w) * w.abs().powf(p - 1.0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_match_central_differences() {
        let w = [0.7f32, -1.3, 0.2, -0.05, 2.0];
        for r in [
            Regularizer::L1 { l1: 0.1 },
            Regularizer::L2 { l2: 0.3 },
            Regularizer::L1l2 { l1: 0.1, l2: 0.2 },
            Regularizer::Lp { p: 3.0, factor: 0.5 },
            Regularizer::Lp { p: 1.5, factor: 0.2 },
        ] {
            let mut g = vec![0.0; w.len()];
            r.add_gradient(&w, &mut g);
            for i in 0..w.len() {
                let h = 1e-3;
                let (mut p, mut m) = (w, w);
                p[i] += h;
                m[i] -= h;
                let num = (r.penalty(&p) - r.penalty(&m)) / (2.0 * h as f64);
                assert!((num - g[i] as f64).abs() < 1e-3 * (1.0 + num.abs()), "{r:?} [{i}]: {num} vs {}", g[i]);
            }
        }
    }

    #[test]
    fn penalties_match_keras_definitions() {
        let w = [1.0, -2.0];
        assert!((Regularizer::L2 { l2: 0.5 }.penalty(&w) - 2.5).abs() < 1e-12);
        assert!((Regularizer::L1 { l1: 0.5 }.penalty(&w) - 1.5).abs() < 1e-12);
        assert!((Regularizer::Lp { p: 2.0, factor: 1.0 }.penalty(&w) - 2.5).abs() < 1e-12);
        assert!(Regularizer::Lp { p: 0.5, factor: 1.0 }.validate().is_err());
    }
}
