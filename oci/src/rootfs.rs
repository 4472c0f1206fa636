//! Paths inside a container's rootfs. An image controls every path and
//! symlink in its rootfs, so a path from ukvm.json is resolved component by
//! component and refused when it would leave the rootfs: a `..` component
//! (in the path or in a symlink's target) or an absolute symlink.

use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution may follow (Linux's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// Resolves `path` (absolute or relative to the rootfs root) to a host
/// path under `rootfs` naming an existing regular file.
pub fn resolve_file(rootfs: &Path, path: &str) -> Result<PathBuf, String> {
    let resolved = resolve(rootfs, path)?;
    match std::fs::metadata(&resolved) {
        Ok(m) if m.is_file() => Ok(resolved),
        Ok(_) => Err("not a regular file in the rootfs".into()),
        Err(e) => Err(format!("not found in the rootfs ({e})")),
    }
}

/// Resolves `path` under `rootfs` without following anything out of it.
/// The result need not exist.
pub fn resolve(rootfs: &Path, path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    let mut pending: Vec<String> = components(path)?;
    pending.reverse();
    let mut resolved = rootfs.to_path_buf();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        let next = resolved.join(&name);
        let Ok(meta) = std::fs::symlink_metadata(&next) else {
            // Missing: the caller says whether that matters.
            resolved = next;
            continue;
        };
        if !meta.file_type().is_symlink() {
            resolved = next;
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err("too many levels of symbolic links".into());
        }
        let target = std::fs::read_link(&next).map_err(|e| format!("readlink: {e}"))?;
        let target = target.to_string_lossy().into_owned();
        if target.starts_with('/') {
            return Err(format!(
                "symlink {name} -> {target} is absolute: it would leave the rootfs"
            ));
        }
        let mut inner =
            components(&target).map_err(|e| format!("symlink {name} -> {target}: {e}"))?;
        inner.reverse();
        pending.extend(inner);
    }
    Ok(resolved)
}

/// The normal components of `path`; `..` is refused.
fn components(path: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err("'..' would leave the rootfs".into()),
            Component::Prefix(_) => return Err("not a Unix path".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn rootfs(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ukvm-oci-rootfs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("boot")).unwrap();
        std::fs::write(dir.join("boot/k.bin"), b"k").unwrap();
        dir
    }

    #[test]
    fn plain_and_relative_symlinks_resolve_inside() {
        let r = rootfs("plain");
        assert_eq!(
            resolve_file(&r, "/boot/k.bin").unwrap(),
            r.join("boot/k.bin")
        );
        assert_eq!(
            resolve_file(&r, "boot/./k.bin").unwrap(),
            r.join("boot/k.bin")
        );
        symlink("boot/k.bin", r.join("kernel")).unwrap();
        assert_eq!(resolve_file(&r, "/kernel").unwrap(), r.join("boot/k.bin"));
        std::fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn escapes_are_refused() {
        let r = rootfs("escape");
        let e = resolve_file(&r, "/../etc/passwd").unwrap_err();
        assert!(e.contains("'..'"), "{e}");
        symlink("/etc/passwd", r.join("abs")).unwrap();
        let e = resolve_file(&r, "/abs").unwrap_err();
        assert!(e.contains("absolute"), "{e}");
        symlink("../../etc/passwd", r.join("boot/up")).unwrap();
        let e = resolve_file(&r, "/boot/up").unwrap_err();
        assert!(e.contains("'..'"), "{e}");
        symlink("loop", r.join("loop")).unwrap();
        let e = resolve_file(&r, "/loop").unwrap_err();
        assert!(e.contains("too many"), "{e}");
        let e = resolve_file(&r, "/boot").unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let e = resolve_file(&r, "/nope").unwrap_err();
        assert!(e.contains("not found"), "{e}");
        std::fs::remove_dir_all(&r).unwrap();
    }
}
