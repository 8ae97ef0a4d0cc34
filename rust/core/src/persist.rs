//! Weight files in the safetensors format (readable by other tools): one float32 tensor per
//! weight, named `layer/kernel`, `layer/bias`..., plus string metadata.
//!
//! Weights are matched to a model by position, as Keras does, so a file saved from one model
//! loads into another built the same way whatever its layer names: the metadata entry
//! `weight_order` lists the tensor names in model order.
//!
//! Saving is careful in the ways a user can rely on:
//! - atomic: the file is written beside its destination under a temporary name
//!   (`.{name}.ferronet-tmp.{pid}.{n}`), flushed to disk (`fsync`), then renamed into place,
//!   and the directory is flushed too, so an interrupted save never leaves a half-written file
//!   and a finished one survives a power loss. The temporary file is removed on every failure,
//!   and a later save to the same path removes those left by processes that were killed.
//! - a symbolic link is followed: its target is replaced, the link stays;
//! - a new file gets the permissions the umask allows (`0o666 & !umask`), a replaced file keeps
//!   its own; a file without write permission is refused (`PermissionDenied`), not replaced;
//! - tensors are streamed to and from the file, never held twice in memory.
//!
//! Reads check every name, dtype and shape before touching the model, so a foreign or damaged
//! file changes nothing.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::params::ParamStore;

fn io_error(path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(format!("no such file: {}", path.display())),
        std::io::ErrorKind::PermissionDenied => Error::PermissionDenied(format!("{}: {e}", path.display())),
        std::io::ErrorKind::OutOfMemory => Error::OutOfMemory(format!("{}: {e}", path.display())),
        _ => Error::Io(format!("{}: {e}", path.display())),
    }
}

/// Prefix of the temporary files of saves to `name`.
fn temporary_prefix(name: &str) -> String {
    format!(".{name}.ferronet-tmp.")
}

/// The file a save to `path` replaces: `path`, or the end of its chain of symbolic links.
fn resolve_links(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&p).map_err(|e| io_error(&p, e))?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(Error::Io(format!("{}: too many levels of symbolic links", path.display())))
}

/// Removes temporary files of earlier saves to `name` in `dir` whose process has ended (on
/// systems with `/proc`; elsewhere nothing is removed).
fn remove_stale(dir: &Path, name: &str) {
    let prefix = temporary_prefix(name);
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)).and_then(|rest| rest.split('.').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A temporary file that is removed when dropped, unless renamed into place.
struct Temporary {
    path: PathBuf,
    file: Option<File>,
}

impl Temporary {
    fn create(dir: &Path, name: &str, mode_of: Option<&fs::Metadata>) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}{}.{n}", temporary_prefix(name), std::process::id()));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o666);
        let file = options.open(&path).map_err(|e| io_error(&path, e))?;
        let tmp = Self { path, file: Some(file) };
        if let Some(m) = mode_of {
            fs::set_permissions(&tmp.path, m.permissions()).map_err(|e| io_error(&tmp.path, e))?;
        }
        Ok(tmp)
    }

    /// Flushes the file to disk and renames it to `target`.
    fn persist(mut self, target: &Path) -> Result<()> {
        let file = self.file.take().expect("persisted once");
        file.sync_all().map_err(|e| io_error(&self.path, e))?;
        drop(file);
        fs::rename(&self.path, target).map_err(|e| io_error(target, e))?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The safetensors header for `named` tensors (offsets in this order) and `metadata`, padded
/// with spaces to a multiple of 8 bytes as the format asks.
fn header(named: &[(String, Vec<usize>, &[f32])], metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    let mut map = serde_json::Map::new();
    map.insert("__metadata__".into(), serde_json::to_value(metadata).expect("strings serialise"));
    let mut offset = 0usize;
    for (name, shape, values) in named {
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if count != Some(values.len()) {
            return Err(Error::InvalidArgument(format!(
                "tensor '{name}' has shape {shape:?} but {} values",
                values.len()
            )));
        }
        let end = values.len().checked_mul(4).and_then(|b| b.checked_add(offset));
        let end = end.ok_or_else(|| Error::InvalidArgument(format!("tensor '{name}' is too large")))?;
        let entry = serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]});
        if name == "__metadata__" || map.insert(name.clone(), entry).is_some() {
            return Err(Error::InvalidArgument(format!("tensor name '{name}' is used twice or reserved")));
        }
        offset = end;
    }
    let mut bytes = serde_json::to_vec(&map).expect("a JSON map serialises");
    bytes.resize(bytes.len().next_multiple_of(8), b' ');
    Ok(bytes)
}

/// Writes `named` tensors `(name, shape, values)` and `metadata` to `path` atomically and
/// durably (see the module notes).
pub fn write_tensors(
    path: &Path,
    named: &[(String, Vec<usize>, &[f32])],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let head = header(named, metadata)?;
    let target = resolve_links(path)?;
    let existing = match fs::metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(&target, e)),
    };
    if let Some(m) = &existing {
        if m.is_dir() {
            return Err(Error::Io(format!("{} is a directory", target.display())));
        }
        if m.permissions().readonly() {
            return Err(Error::PermissionDenied(format!(
                "{} is read-only; make it writable or save elsewhere",
                target.display()
            )));
        }
    }
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    remove_stale(&dir, &name);
    let mut tmp = Temporary::create(&dir, &name, existing.as_ref())?;
    {
        let file = tmp.file.as_mut().expect("a new temporary file is open");
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let write_err = |e| Error::Io(format!("cannot write {}: {e}", target.display()));
        w.write_all(&(head.len() as u64).to_le_bytes()).map_err(write_err)?;
        w.write_all(&head).map_err(write_err)?;
        let mut buf = Vec::with_capacity(1 << 16);
        for (_, _, values) in named {
            for chunk in values.chunks(1 << 14) {
                buf.clear();
                buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
                w.write_all(&buf).map_err(write_err)?;
            }
        }
        w.flush().map_err(write_err)?;
    }
    tmp.persist(&target)?;
    sync_directory(&dir)
}

/// Flushes a directory entry (the rename) to disk; file systems that cannot are let be.
fn sync_directory(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        if !matches!(e.kind(), std::io::ErrorKind::InvalidInput | std::io::ErrorKind::Unsupported) {
            return Err(io_error(dir, e));
        }
    }
    Ok(())
}

/// Tensors and metadata read from a safetensors file.
pub struct TensorFile {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub metadata: HashMap<String, String>,
}

/// Longest header accepted (the safetensors format's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// One tensor as the header describes it.
#[derive(serde::Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// Reads every tensor of a safetensors file (float32 only), streaming: each tensor goes from
/// the file into its own buffer, so memory peaks near the file's size, not twice it. The
/// header is checked whole (names, dtypes, shapes against offsets, offsets against the file's
/// length) before any tensor is read.
pub fn read_tensors(path: &Path) -> Result<TensorFile> {
    let corrupt =
        |why: String| Error::InvalidArgument(format!("{} is not a valid weights file: {why}", path.display()));
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let size = file.metadata().map_err(|e| io_error(path, e))?.len();
    let mut head = [0u8; 8];
    file.read_exact(&mut head).map_err(|_| corrupt("shorter than its header".into()))?;
    let n = u64::from_le_bytes(head);
    if n > MAX_HEADER || n > size - 8 {
        return Err(corrupt(format!("a header of {n} bytes does not fit in {size}")));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(|e| io_error(path, e))?;
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| corrupt(format!("unreadable header: {e}")))?;
    let metadata = match map.remove("__metadata__") {
        Some(m) => serde_json::from_value(m).map_err(|e| corrupt(format!("unreadable metadata: {e}")))?,
        None => HashMap::new(),
    };
    let mut entries = map
        .into_iter()
        .map(|(name, v)| serde_json::from_value::<Entry>(v).map(|e| (name, e)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| corrupt(format!("unreadable tensor entry: {e}")))?;
    entries.sort_by_key(|(_, e)| e.data_offsets);
    let mut at = 0u64;
    for (name, e) in &entries {
        if e.dtype != "F32" {
            return Err(corrupt(format!("tensor '{name}' has dtype {}, expected F32", e.dtype)));
        }
        let bytes = crate::params::checked_len(&e.shape).and_then(|c| (c as u64).checked_mul(4));
        if e.data_offsets.0 != at || Some(e.data_offsets.1.wrapping_sub(at)) != bytes || e.data_offsets.1 < at {
            return Err(corrupt(format!("tensor '{name}': its offsets do not match its shape {:?}", e.shape)));
        }
        at = e.data_offsets.1;
    }
    if at != size - 8 - n {
        return Err(corrupt(format!("the header describes {at} bytes of data, the file holds {}", size - 8 - n)));
    }
    let mut tensors = HashMap::with_capacity(entries.len());
    let mut chunk = vec![0u8; 1 << 16];
    for (name, e) in entries {
        let count = ((e.data_offsets.1 - e.data_offsets.0) / 4) as usize;
        let mut values = Vec::new();
        values.try_reserve_exact(count).map_err(|_| {
            Error::OutOfMemory(format!("cannot allocate {} bytes for tensor '{name}'", count.saturating_mul(4)))
        })?;
        let mut left = count * 4;
        while left > 0 {
            let k = left.min(chunk.len());
            file.read_exact(&mut chunk[..k]).map_err(|e| io_error(path, e))?;
            values.extend(chunk[..k].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
            left -= k;
        }
        tensors.insert(name, (e.shape, values));
    }
    Ok(TensorFile { tensors, metadata })
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
        // The format's reference parser reads what we write.
        let bytes = std::fs::read(&path).unwrap();
        let parsed = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(parsed.tensor("d/kernel").unwrap().shape(), [2, 3]);
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

    #[cfg(unix)]
    #[test]
    fn saves_follow_links_keep_modes_refuse_read_only_files_and_leave_no_temporary() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = std::env::temp_dir().join(format!("ferronet-persist-modes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (s, meta) = (store(), HashMap::new);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

        let target = dir.join("target.st");
        save_weights(&s, &target, meta()).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o604)).unwrap();
        let link = dir.join("link.st");
        symlink("target.st", &link).unwrap();
        save_weights(&s, &link, meta()).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(mode(&target), 0o604);
        assert_eq!(read_tensors(&link).unwrap().tensors.len(), 2);

        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o444)).unwrap();
        let before = std::fs::read(&target).unwrap();
        assert!(matches!(save_weights(&s, &target, meta()), Err(Error::PermissionDenied(_))));
        assert_eq!(std::fs::read(&target).unwrap(), before);

        // A temporary file of a process that no longer exists goes at the next save; a dropped one
        // (a failed write) at once.
        let stale = dir.join(format!("{}4294967295.0", temporary_prefix("fresh.st")));
        std::fs::write(&stale, b"left by a killed save").unwrap();
        save_weights(&s, &dir.join("fresh.st"), meta()).unwrap();
        assert!(!stale.exists());
        drop(Temporary::create(&dir, "fresh.st", None).unwrap());
        let names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(names.iter().all(|n| !n.contains("ferronet-tmp")), "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
