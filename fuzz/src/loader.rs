//! The kernel loaders, fed mutations of real images: Solo5's hvt and
//! virtio (Multiboot) builds, Unikraft's Multiboot and Linux-boot images,
//! our test guests (Multiboot ELF32/ELF64, a.out kludge, PVH, vmlinux,
//! bzImage, hvt) and Debian's kernel. One target per format of the seed
//! images. Invariants: no panic; `probe` and `load` agree (an image `probe`
//! accepts either loads or fails with an error, never a panic); guest
//! memory is the only thing written (vm-memory checks every access).

use crate::rng::InPlace;
use crate::{signature, Rng, Target};
use std::path::{Path, PathBuf};
use ukvm_boot::{BootParams, Format, Module};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Seed images of one format.
pub struct Loader {
    /// The seeds' format; `None` for images `probe` refuses.
    format: Option<Format>,
    seeds: Vec<(String, Vec<u8>)>,
    mem: GuestMemoryMmap,
    mutation: InPlace,
}

/// Reads every file under `dirs` (not recursing) that `probe` accepts,
/// grouped into one target per format.
pub fn targets(dirs: &[PathBuf]) -> Vec<Loader> {
    let mut by_format: Vec<Loader> = Vec::new();
    for file in dirs.iter().flat_map(|d| files(d)) {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        // Kernels ukvm refuses today (Solo5's hvt ABI 2 images before it
        // is supported, a broken ELF) are seeds too: `None`.
        let format = match ukvm_boot::probe(&bytes) {
            Ok(f) => Some(f),
            Err(_) if bytes.starts_with(b"\x7fELF") => None,
            Err(_) => continue,
        };
        let name = file.display().to_string();
        match by_format.iter_mut().find(|l| l.format == format) {
            Some(l) => l.seeds.push((name, bytes)),
            None => by_format.push(Loader {
                format,
                seeds: vec![(name, bytes)],
                mem: GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 256 << 20)])
                    .expect("guest memory"),
                mutation: InPlace::default(),
            }),
        }
    }
    by_format
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

impl Loader {
    /// The seed files.
    pub fn seeds(&self) -> impl Iterator<Item = &str> {
        self.seeds.iter().map(|(n, _)| n.as_str())
    }
}

impl Target for Loader {
    fn name(&self) -> String {
        let format = self.format.map_or("refused by probe", Format::name);
        format!("loader {format} ({} seeds)", self.seeds.len())
    }

    fn one(&mut self, rng: &mut Rng) -> Result<u64, String> {
        let i = rng.below(self.seeds.len() as u64) as usize;
        let image = &mut self.seeds[i].1;
        let len = if rng.one_in(16) {
            image.len()
        } else {
            self.mutation.mutate(rng, image)
        };
        let view = &image[..len];
        let module = [7u8; 300];
        let params = BootParams {
            cmdline: if rng.one_in(4) {
                "x ".repeat(rng.below(2100) as usize)
            } else {
                String::new()
            },
            kernel_name: "fuzz".into(),
            modules: if rng.one_in(4) {
                vec![Module {
                    name: "m".into(),
                    data: &module,
                    string: "m".into(),
                }]
            } else {
                Vec::new()
            },
            initrd: rng.one_in(4).then_some(&module[..]),
            acpi_rsdp: rng.one_in(2).then_some(0xe0000),
        };
        let probed = ukvm_boot::probe(view);
        let loaded = probed
            .as_ref()
            .ok()
            .map(|_| ukvm_boot::load(&self.mem, view, &params));
        let sig = signature(&[
            probed.as_ref().map_or(99, |f| *f as u64),
            match &loaded {
                None => 0,
                Some(Ok(boot)) => 1 + boot.format as u64,
                Some(Err(e)) => 100 + discriminant(&e.to_string()),
            },
        ]);
        self.mutation.restore(image);
        Ok(sig)
    }
}

/// A small number for an error message's first words (its kind).
fn discriminant(msg: &str) -> u64 {
    let head: String = msg.split_whitespace().take(3).collect();
    signature(&head.bytes().map(u64::from).collect::<Vec<_>>()) % 64
}

/// Where the real images are, relative to the repository root `root`:
/// Solo5's and Unikraft's (../shared), Debian's kernel fixture, and the
/// test guests of every build profile (and target).
pub fn default_seed_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![
        root.join("../shared/solo5"),
        root.join("../shared/unikraft"),
        root.join("target/fixtures/linux/boot"),
    ];
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    // target/<profile>, and target/<triple>/<profile> where the build
    // names its target (.cargo/config.toml does).
    let profiles = files_and_dirs(&target)
        .into_iter()
        .flat_map(|d| std::iter::once(d.clone()).chain(files_and_dirs(&d)));
    for profile in profiles {
        for build in files_and_dirs(&profile.join("build")) {
            let name = build
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with("ukvm-tests-") && build.join("out").is_dir() {
                dirs.push(build.join("out"));
            }
        }
    }
    dirs
}

fn files_and_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|e| e.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}
