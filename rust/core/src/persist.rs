//! Weight files in the safetensors format (readable by other tools): one float32 tensor per
//! weight, named `layer/kernel`, `layer/bias`..., plus string metadata.
//!
//! Weights are matched to a model by position, as Keras does, so a file saved from one model
//! loads into another built the same way whatever its layer names: the metadata entry
//! `weight_order` lists the tensor names in model order.
//!
//! Writes go to a temporary file in the same directory, then a rename: an interrupted save
//! never leaves a half-written file in place of the previous one. Reads check every name, dtype
//! and shape before touching the model, so a foreign or damaged file changes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{serialize_to_file, Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};
use crate::params::ParamStore;

fn io_error(path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound(format!("no such file: {}", path.display()))
    } else {
        Error::Io(format!("{}: {e}", path.display()))
    }
}

/// A sibling path for the temporary file of an atomic write.
fn temporary_beside(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `named` tensors `(name, shape, values)` and `metadata` to `path` atomically.
pub fn write_tensors(
    path: &Path,
    named: &[(String, Vec<usize>, &[f32])],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let bytes: Vec<Vec<u8>> = named.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views = named
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Io(format!("cannot encode tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let tmp = temporary_beside(path);
    let written = serialize_to_file(views, Some(metadata), &tmp);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Io(format!("cannot write {}: {e}", path.display())));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_error(path, e)
    })
}

/// Tensors and metadata read from a safetensors file.
pub struct TensorFile {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub metadata: HashMap<String, String>,
}

/// Reads every tensor of a safetensors file (float32 only).
pub fn read_tensors(path: &Path) -> Result<TensorFile> {
    let buffer = std::fs::read(path).map_err(|e| io_error(path, e))?;
    let corrupt =
        |why: String| Error::InvalidArgument(format!("{} is not a valid weights file: {why}", path.display()));
    let file = SafeTensors::deserialize(&buffer).map_err(|e| corrupt(e.to_string()))?;
    let (_, meta) = SafeTensors::read_metadata(&buffer).map_err(|e| corrupt(e.to_string()))?;
    let mut tensors = HashMap::new();
    for name in file.names() {
        let view = file.tensor(name).map_err(|e| corrupt(e.to_string()))?;
        if view.dtype() != Dtype::F32 {
            return Err(corrupt(format!("tensor '{name}' has dtype {:?}, expected F32", view.dtype())));
        }
        let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        tensors.insert(name.to_string(), (view.shape().to_vec(), values));
    }
    Ok(TensorFile { tensors, metadata: meta.metadata().clone().unwrap_or_default() })
}

/// Metadata key holding the tensor names in model order (a JSON list).
pub const ORDER_KEY: &str = "weight_order";

/// Saves every weight of `store` to `path`.
pub fn save_weights(store: &ParamStore, path: &Path, mut metadata: HashMap<String, String>) -> Result<()> {
    let order: Vec<&str> = store.tensors.iter().map(|t| t.name.as_str()).collect();
    metadata.insert(ORDER_KEY.into(), serde_json::to_string(&order).expect("names serialise"));
    let named: Vec<(String, Vec<usize>, &[f32])> =
        store.tensors.iter().map(|t| (t.name.clone(), t.shape.clone(), &store.values[t.range()])).collect();
    write_tensors(path, &named, metadata)
}

/// Loads every weight of `store` from `file`, matched by position (the file's `weight_order`),
/// after checking that it holds as many weights as the model with the same shapes. Nothing
/// changes when a check fails.
pub fn load_weights(store: &mut ParamStore, file: &TensorFile, source: &Path) -> Result<()> {
    let mismatch =
        |why: String| Error::InvalidArgument(format!("{} does not match this model: {why}", source.display()));
    let order: Vec<String> = match file.metadata.get(ORDER_KEY) {
        Some(json) => serde_json::from_str(json).map_err(|e| mismatch(format!("unreadable {ORDER_KEY}: {e}")))?,
        None => {
            let mut names: Vec<String> = file.tensors.keys().cloned().collect();
            names.sort();
            names
        }
    };
    if order.len() != store.tensors.len() || order.iter().any(|n| !file.tensors.contains_key(n)) {
        return Err(mismatch(format!(
            "the file holds {} weights, the model {}",
            file.tensors.len(),
            store.tensors.len()
        )));
    }
    for (i, (t, name)) in store.tensors.iter().zip(&order).enumerate() {
        let shape = &file.tensors[name].0;
        if *shape != t.shape {
            return Err(mismatch(format!(
                "weight #{} ('{}' in the model) has shape {:?} in the file, {:?} in the model",
                i, t.name, shape, t.shape
            )));
        }
    }
    for (t, name) in store.tensors.iter().zip(&order) {
        let range = t.range();
        store.values[range].copy_from_slice(&file.tensors[name].1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Role;

    fn store() -> ParamStore {
        let mut s = ParamStore::default();
        s.register("d/kernel".into(), vec![2, 3], Role::Kernel);
        s.register("d/bias".into(), vec![3], Role::Bias);
        s.values.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32 * 0.5 - 1.0);
        s
    }

    #[test]
    fn round_trip_and_mismatch_and_corruption() {
        let dir = std::env::temp_dir().join(format!("ferronet-persist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.safetensors");
        let s = store();
        save_weights(&s, &path, HashMap::from([("format".into(), "ferronet".into())])).unwrap();
        let file = read_tensors(&path).unwrap();
        assert_eq!(file.metadata["format"], "ferronet");
        let mut t = store();
        t.values.fill(0.0);
        load_weights(&mut t, &file, &path).unwrap();
        assert_eq!(t.values, s.values);

        let mut other = ParamStore::default();
        other.register("d/kernel".into(), vec![3, 2], Role::Kernel);
        other.register("d/bias".into(), vec![3], Role::Bias);
        let before = other.values.clone();
        assert!(load_weights(&mut other, &file, &path).unwrap_err().to_string().contains("shape"));
        assert_eq!(other.values, before);

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(read_tensors(&path).is_err());
        std::fs::write(&path, b"not a weights file").unwrap();
        assert!(read_tensors(&path).is_err());
        assert!(matches!(read_tensors(&dir.join("missing")), Err(Error::NotFound(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
