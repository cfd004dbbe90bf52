//! The input files named on a command line: files as given, directories
//! walked for files of the wanted kinds.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// An input path that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// The files of `paths`, in order: a path naming a file is taken whatever
/// its name; a directory gives its files whose extension is one of `exts`
/// (any case), sorted, and its subdirectories' likewise. A directory
/// reached again (through a symbolic link back up the tree) is read once.
pub fn collect<P: AsRef<Path>>(paths: &[P], exts: &[&str]) -> Result<Vec<PathBuf>, FileError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for p in paths {
        walk(p.as_ref(), true, exts, &mut out, &mut seen)?;
    }
    Ok(out)
}

fn walk(p: &Path, named: bool, exts: &[&str], out: &mut Vec<PathBuf>, seen: &mut HashSet<PathBuf>) -> Result<(), FileError> {
    let err = |source| FileError {
        path: p.to_path_buf(),
        source,
    };
    let meta = match fs::metadata(p) {
        Ok(m) => m,
        // `-` reads standard input elsewhere (captures); not here.
        Err(e) if named && p == Path::new("-") && e.kind() == io::ErrorKind::NotFound => {
            return Err(err(io::Error::new(
                e.kind(),
                "no such file (standard input is not read here: give files or directories)",
            )))
        }
        Err(e) => return Err(err(e)),
    };
    if meta.is_dir() {
        if !seen.insert(fs::canonicalize(p).map_err(err)?) {
            tracing::warn!(dir = %p.display(), "directory already read (named twice, or reached again through a link); skipped");
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = fs::read_dir(p)
            .map_err(err)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        entries.sort();
        for e in entries {
            walk(&e, false, exts, out, seen)?;
        }
    } else if named
        || p.extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| exts.iter().any(|e| x.eq_ignore_ascii_case(e)))
    {
        out.push(p.to_path_buf());
    }
    Ok(())
}
