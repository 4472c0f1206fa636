//! The registers gdb sees, in the guest's mode: the x86-64 set (with the
//! segment bases and the control registers, as QEMU's gdbstub shows them)
//! for long-mode guests, the i386 set for 32-bit protected-mode guests.
//!
//! Each layout is one table: it gives gdb's target description (XML) and
//! the byte order of the `g`/`G` packets, and says where in KVM's state
//! each register lives.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

/// Where a register's value lives in KVM's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    /// General register, by its index in [`gp`] (amd64 order).
    Gp(usize),
    Rip,
    Rflags,
    /// Segment selector: cs, ss, ds, es, fs, gs.
    Seg(usize),
    FsBase,
    GsBase,
    Cr0,
    Cr2,
    Cr3,
    Cr4,
    Cr8,
    Efer,
    St(usize),
    Fctrl,
    Fstat,
    Ftag,
    Fiseg,
    Fioff,
    Foseg,
    Fooff,
    Fop,
    Xmm(usize),
    Mxcsr,
}

/// Which group of KVM state a register belongs to (what to write back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Regs,
    Sregs,
    Fpu,
}

impl Src {
    fn group(self) -> Group {
        match self {
            Src::Gp(_) | Src::Rip | Src::Rflags => Group::Regs,
            Src::Seg(_)
            | Src::FsBase
            | Src::GsBase
            | Src::Cr0
            | Src::Cr2
            | Src::Cr3
            | Src::Cr4
            | Src::Cr8
            | Src::Efer => Group::Sregs,
            _ => Group::Fpu,
        }
    }
}

struct Reg {
    name: &'static str,
    bits: usize,
    ty: &'static str,
    src: Src,
}

const fn reg(name: &'static str, bits: usize, ty: &'static str, src: Src) -> Reg {
    Reg {
        name,
        bits,
        ty,
        src,
    }
}

/// The register set of a debug session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// x86-64 (long mode guests, and 64-bit kernels while they still run
    /// 32-bit code: values zero-extended, as QEMU shows them).
    X86_64,
    /// i386 (32-bit protected mode kernels).
    I386,
}

const CORE64: [Reg; 24] = [
    reg("rax", 64, "int64", Src::Gp(0)),
    reg("rbx", 64, "int64", Src::Gp(1)),
    reg("rcx", 64, "int64", Src::Gp(2)),
    reg("rdx", 64, "int64", Src::Gp(3)),
    reg("rsi", 64, "int64", Src::Gp(4)),
    reg("rdi", 64, "int64", Src::Gp(5)),
    reg("rbp", 64, "data_ptr", Src::Gp(6)),
    reg("rsp", 64, "data_ptr", Src::Gp(7)),
    reg("r8", 64, "int64", Src::Gp(8)),
    reg("r9", 64, "int64", Src::Gp(9)),
    reg("r10", 64, "int64", Src::Gp(10)),
    reg("r11", 64, "int64", Src::Gp(11)),
    reg("r12", 64, "int64", Src::Gp(12)),
    reg("r13", 64, "int64", Src::Gp(13)),
    reg("r14", 64, "int64", Src::Gp(14)),
    reg("r15", 64, "int64", Src::Gp(15)),
    reg("rip", 64, "code_ptr", Src::Rip),
    reg("eflags", 32, "int32", Src::Rflags),
    reg("cs", 32, "int32", Src::Seg(0)),
    reg("ss", 32, "int32", Src::Seg(1)),
    reg("ds", 32, "int32", Src::Seg(2)),
    reg("es", 32, "int32", Src::Seg(3)),
    reg("fs", 32, "int32", Src::Seg(4)),
    reg("gs", 32, "int32", Src::Seg(5)),
];

const CORE32: [Reg; 16] = [
    reg("eax", 32, "int32", Src::Gp(0)),
    reg("ecx", 32, "int32", Src::Gp(2)),
    reg("edx", 32, "int32", Src::Gp(3)),
    reg("ebx", 32, "int32", Src::Gp(1)),
    reg("esp", 32, "data_ptr", Src::Gp(7)),
    reg("ebp", 32, "data_ptr", Src::Gp(6)),
    reg("esi", 32, "int32", Src::Gp(4)),
    reg("edi", 32, "int32", Src::Gp(5)),
    reg("eip", 32, "code_ptr", Src::Rip),
    reg("eflags", 32, "int32", Src::Rflags),
    reg("cs", 32, "int32", Src::Seg(0)),
    reg("ss", 32, "int32", Src::Seg(1)),
    reg("ds", 32, "int32", Src::Seg(2)),
    reg("es", 32, "int32", Src::Seg(3)),
    reg("fs", 32, "int32", Src::Seg(4)),
    reg("gs", 32, "int32", Src::Seg(5)),
];

const X87: [Reg; 16] = [
    reg("st0", 80, "i387_ext", Src::St(0)),
    reg("st1", 80, "i387_ext", Src::St(1)),
    reg("st2", 80, "i387_ext", Src::St(2)),
    reg("st3", 80, "i387_ext", Src::St(3)),
    reg("st4", 80, "i387_ext", Src::St(4)),
    reg("st5", 80, "i387_ext", Src::St(5)),
    reg("st6", 80, "i387_ext", Src::St(6)),
    reg("st7", 80, "i387_ext", Src::St(7)),
    reg("fctrl", 32, "int", Src::Fctrl),
    reg("fstat", 32, "int", Src::Fstat),
    reg("ftag", 32, "int", Src::Ftag),
    reg("fiseg", 32, "int", Src::Fiseg),
    reg("fioff", 32, "int", Src::Fioff),
    reg("foseg", 32, "int", Src::Foseg),
    reg("fooff", 32, "int", Src::Fooff),
    reg("fop", 32, "int", Src::Fop),
];

const fn xmm(i: usize) -> Reg {
    const NAMES: [&str; 16] = [
        "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
    ];
    reg(NAMES[i], 128, "uint128", Src::Xmm(i))
}

const SSE64: [Reg; 17] = [
    xmm(0),
    xmm(1),
    xmm(2),
    xmm(3),
    xmm(4),
    xmm(5),
    xmm(6),
    xmm(7),
    xmm(8),
    xmm(9),
    xmm(10),
    xmm(11),
    xmm(12),
    xmm(13),
    xmm(14),
    xmm(15),
    reg("mxcsr", 32, "int", Src::Mxcsr),
];

const SSE32: [Reg; 9] = [
    xmm(0),
    xmm(1),
    xmm(2),
    xmm(3),
    xmm(4),
    xmm(5),
    xmm(6),
    xmm(7),
    reg("mxcsr", 32, "int", Src::Mxcsr),
];

const SEGS64: [Reg; 2] = [
    reg("fs_base", 64, "int64", Src::FsBase),
    reg("gs_base", 64, "int64", Src::GsBase),
];

const SEGS32: [Reg; 2] = [
    reg("fs_base", 32, "int32", Src::FsBase),
    reg("gs_base", 32, "int32", Src::GsBase),
];

const SYS64: [Reg; 6] = [
    reg("cr0", 64, "int64", Src::Cr0),
    reg("cr2", 64, "int64", Src::Cr2),
    reg("cr3", 64, "int64", Src::Cr3),
    reg("cr4", 64, "int64", Src::Cr4),
    reg("cr8", 64, "int64", Src::Cr8),
    reg("efer", 64, "int64", Src::Efer),
];

const SYS32: [Reg; 6] = [
    reg("cr0", 32, "int32", Src::Cr0),
    reg("cr2", 32, "int32", Src::Cr2),
    reg("cr3", 32, "int32", Src::Cr3),
    reg("cr4", 32, "int32", Src::Cr4),
    reg("cr8", 32, "int32", Src::Cr8),
    reg("efer", 32, "int32", Src::Efer),
];

/// gdb features in packet order: (feature name, registers).
fn features(layout: Layout) -> [(&'static str, &'static [Reg]); 5] {
    match layout {
        Layout::X86_64 => [
            ("org.gnu.gdb.i386.core", &CORE64),
            ("org.gnu.gdb.i386.core", &X87),
            ("org.gnu.gdb.i386.sse", &SSE64),
            ("org.gnu.gdb.i386.segments", &SEGS64),
            ("org.ukvm.x86.sys", &SYS64),
        ],
        Layout::I386 => [
            ("org.gnu.gdb.i386.core", &CORE32),
            ("org.gnu.gdb.i386.core", &X87),
            ("org.gnu.gdb.i386.sse", &SSE32),
            // gdb's i386 code takes a segments feature for Linux's and
            // asserts on it here: the bases go with the system registers.
            ("org.ukvm.x86.sys", &SEGS32),
            ("org.ukvm.x86.sys", &SYS32),
        ],
    }
}

fn all(layout: Layout) -> impl Iterator<Item = &'static Reg> {
    features(layout)
        .into_iter()
        .flat_map(|(_, regs)| regs.iter())
}

impl Layout {
    /// gdb's target description for this layout.
    pub fn target_xml(self) -> String {
        let arch = match self {
            Layout::X86_64 => "i386:x86-64",
            Layout::I386 => "i386",
        };
        let mut xml = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE target SYSTEM \"gdb-target.dtd\">\
             <target version=\"1.0\"><architecture>{arch}</architecture>"
        );
        let mut open: Option<&str> = None;
        for (feature, regs) in features(self) {
            if open != Some(feature) {
                if open.is_some() {
                    xml.push_str("</feature>");
                }
                xml.push_str(&format!("<feature name=\"{feature}\">"));
                open = Some(feature);
            }
            for r in regs {
                let group = match r.src {
                    Src::St(_) | Src::Fctrl | Src::Fstat | Src::Ftag => " group=\"float\"",
                    Src::Fiseg | Src::Fioff | Src::Foseg | Src::Fooff | Src::Fop => {
                        " group=\"float\""
                    }
                    Src::Xmm(_) | Src::Mxcsr => " group=\"vector\"",
                    _ => "",
                };
                xml.push_str(&format!(
                    "<reg name=\"{}\" bitsize=\"{}\" type=\"{}\"{group}/>",
                    r.name, r.bits, r.ty
                ));
            }
        }
        xml.push_str("</feature></target>");
        xml
    }

    /// Size of a `g` packet's payload in bytes.
    pub fn size(self) -> usize {
        all(self).map(|r| r.bits / 8).sum()
    }
}

/// The vCPU state gdb's registers come from.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuState {
    /// General registers, RIP, RFLAGS.
    pub regs: kvm_regs,
    /// Segments, control registers, EFER.
    pub sregs: kvm_sregs,
    /// x87 and SSE state.
    pub fpu: kvm_fpu,
}

/// General registers in amd64 order: rax rbx rcx rdx rsi rdi rbp rsp r8-r15.
fn gp(r: &mut kvm_regs) -> [&mut u64; 16] {
    [
        &mut r.rax, &mut r.rbx, &mut r.rcx, &mut r.rdx, &mut r.rsi, &mut r.rdi, &mut r.rbp,
        &mut r.rsp, &mut r.r8, &mut r.r9, &mut r.r10, &mut r.r11, &mut r.r12, &mut r.r13,
        &mut r.r14, &mut r.r15,
    ]
}

fn segs(s: &mut kvm_sregs) -> [&mut u16; 6] {
    [
        &mut s.cs.selector,
        &mut s.ss.selector,
        &mut s.ds.selector,
        &mut s.es.selector,
        &mut s.fs.selector,
        &mut s.gs.selector,
    ]
}

/// KVM keeps the abridged tag (one bit per register, 1 = valid); gdb shows
/// the full tag word (two bits per register, 3 = empty).
fn full_tag(abridged: u8) -> u128 {
    (0..8).fold(0u128, |tag, i| {
        let bits = if abridged & (1 << i) != 0 { 0 } else { 3 };
        tag | (bits << (2 * i))
    })
}

fn abridged_tag(full: u128) -> u8 {
    (0..8).fold(0u8, |tag, i| {
        if (full >> (2 * i)) & 3 != 3 {
            tag | (1 << i)
        } else {
            tag
        }
    })
}

fn get(st: &mut CpuState, src: Src) -> u128 {
    let f = &st.fpu;
    match src {
        Src::Gp(i) => u128::from(*gp(&mut st.regs)[i]),
        Src::Rip => u128::from(st.regs.rip),
        Src::Rflags => u128::from(st.regs.rflags),
        Src::Seg(i) => u128::from(*segs(&mut st.sregs)[i]),
        Src::FsBase => u128::from(st.sregs.fs.base),
        Src::GsBase => u128::from(st.sregs.gs.base),
        Src::Cr0 => u128::from(st.sregs.cr0),
        Src::Cr2 => u128::from(st.sregs.cr2),
        Src::Cr3 => u128::from(st.sregs.cr3),
        Src::Cr4 => u128::from(st.sregs.cr4),
        Src::Cr8 => u128::from(st.sregs.cr8),
        Src::Efer => u128::from(st.sregs.efer),
        Src::St(i) => u128::from_le_bytes(f.fpr[i]) & ((1 << 80) - 1),
        Src::Fctrl => u128::from(f.fcw),
        Src::Fstat => u128::from(f.fsw),
        Src::Ftag => full_tag(f.ftwx),
        Src::Fiseg | Src::Foseg => 0,
        Src::Fioff => u128::from(f.last_ip as u32),
        Src::Fooff => u128::from(f.last_dp as u32),
        Src::Fop => u128::from(f.last_opcode),
        Src::Xmm(i) => u128::from_le_bytes(f.xmm[i]),
        Src::Mxcsr => u128::from(f.mxcsr),
    }
}

fn set(st: &mut CpuState, src: Src, v: u128) {
    let f = &mut st.fpu;
    match src {
        Src::Gp(i) => *gp(&mut st.regs)[i] = v as u64,
        Src::Rip => st.regs.rip = v as u64,
        Src::Rflags => st.regs.rflags = v as u64,
        Src::Seg(i) => *segs(&mut st.sregs)[i] = v as u16,
        Src::FsBase => st.sregs.fs.base = v as u64,
        Src::GsBase => st.sregs.gs.base = v as u64,
        Src::Cr0 => st.sregs.cr0 = v as u64,
        Src::Cr2 => st.sregs.cr2 = v as u64,
        Src::Cr3 => st.sregs.cr3 = v as u64,
        Src::Cr4 => st.sregs.cr4 = v as u64,
        Src::Cr8 => st.sregs.cr8 = v as u64,
        Src::Efer => st.sregs.efer = v as u64,
        Src::St(i) => f.fpr[i] = v.to_le_bytes(),
        Src::Fctrl => f.fcw = v as u16,
        Src::Fstat => f.fsw = v as u16,
        Src::Ftag => f.ftwx = abridged_tag(v),
        Src::Fiseg | Src::Foseg => {}
        Src::Fioff => f.last_ip = (f.last_ip & !0xFFFF_FFFF) | (v as u64 & 0xFFFF_FFFF),
        Src::Fooff => f.last_dp = (f.last_dp & !0xFFFF_FFFF) | (v as u64 & 0xFFFF_FFFF),
        Src::Fop => f.last_opcode = v as u16,
        Src::Xmm(i) => f.xmm[i] = v.to_le_bytes(),
        Src::Mxcsr => f.mxcsr = v as u32,
    }
}

/// The `g` packet payload for `state`.
pub fn serialize(layout: Layout, state: &CpuState) -> Vec<u8> {
    let mut st = *state;
    let mut out = Vec::with_capacity(layout.size());
    for r in all(layout) {
        let bytes = get(&mut st, r.src).to_le_bytes();
        out.extend_from_slice(&bytes[..r.bits / 8]);
    }
    out
}

/// Which parts of KVM's state a `G` payload changes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    /// General registers, RIP or RFLAGS.
    pub regs: bool,
    /// Segment selectors, bases, control registers or EFER.
    pub sregs: bool,
    /// x87/SSE state.
    pub fpu: bool,
}

/// Applies a `G` packet payload to `state`; `None` if its size is wrong.
/// Registers narrower than KVM's keep their upper bits.
pub fn deserialize(layout: Layout, bytes: &[u8], state: &mut CpuState) -> Option<Changed> {
    if bytes.len() != layout.size() {
        return None;
    }
    let mut changed = Changed::default();
    let mut off = 0;
    for r in all(layout) {
        let n = r.bits / 8;
        let mut buf = [0u8; 16];
        buf[..n].copy_from_slice(&bytes[off..off + n]);
        off += n;
        let new = u128::from_le_bytes(buf);
        let old = get(state, r.src);
        let mask = if r.bits >= 128 {
            u128::MAX
        } else {
            (1u128 << r.bits) - 1
        };
        if old & mask == new {
            continue;
        }
        set(state, r.src, (old & !mask) | new);
        match r.src.group() {
            Group::Regs => changed.regs = true,
            Group::Sregs => changed.sregs = true,
            Group::Fpu => changed.fpu = true,
        }
    }
    Some(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CpuState {
        let mut st = CpuState::default();
        st.regs.rax = 0x1122_3344_5566_7788;
        st.regs.rcx = 7;
        st.regs.rip = 0x10_0020;
        st.regs.rflags = 0x246;
        st.sregs.cs.selector = 0x8;
        st.sregs.cr0 = 0x8000_0011;
        st.sregs.cr3 = 0x20_3000;
        st.sregs.efer = 0x500;
        st.fpu.ftwx = 0b1000_0001;
        st.fpu.xmm[3] = [0xAB; 16];
        st
    }

    #[test]
    fn sizes_match_gdbs_register_sets() {
        // amd64: 16*8 + 8 + 4 + 6*4 (core) + 8*10 + 8*4 (x87)
        // + 16*16 + 4 (sse) + 2*8 (segment bases) + 6*8 (system).
        assert_eq!(Layout::X86_64.size(), 164 + 112 + 260 + 16 + 48);
        // i386: 16*4 (core) + 112 (x87) + 8*16 + 4 + 2*4 + 6*4.
        assert_eq!(Layout::I386.size(), 64 + 112 + 132 + 8 + 24);
    }

    #[test]
    fn i386_order_is_eax_ecx_edx_ebx() {
        let mut st = sample();
        st.regs.rbx = 2;
        st.regs.rdx = 3;
        let g = serialize(Layout::I386, &st);
        assert_eq!(&g[0..4], &0x5566_7788u32.to_le_bytes());
        assert_eq!(&g[4..8], &7u32.to_le_bytes());
        assert_eq!(&g[8..12], &3u32.to_le_bytes());
        assert_eq!(&g[12..16], &2u32.to_le_bytes());
        assert_eq!(&g[32..36], &0x10_0020u32.to_le_bytes());
    }

    #[test]
    fn round_trip_changes_nothing_and_a_write_lands() {
        for layout in [Layout::X86_64, Layout::I386] {
            let st = sample();
            let mut copy = st;
            let mut g = serialize(layout, &st);
            assert_eq!(deserialize(layout, &g, &mut copy), Some(Changed::default()));
            assert_eq!(copy.regs.rax, st.regs.rax);
            assert_eq!(copy.fpu.ftwx, st.fpu.ftwx);
            // rcx is the second register in both layouts' byte order? No:
            // amd64 has rbx second, i386 ecx. Write rax (first) instead.
            g[0] = 0x99;
            let changed = deserialize(layout, &g, &mut copy).unwrap();
            assert!(changed.regs && !changed.sregs && !changed.fpu);
            assert_eq!(copy.regs.rax & 0xFF, 0x99);
            // The i386 write keeps rax's upper half.
            assert_eq!(copy.regs.rax >> 32, 0x1122_3344);
        }
    }

    #[test]
    fn wrong_size_is_refused() {
        let mut st = sample();
        assert_eq!(deserialize(Layout::I386, &[0; 10], &mut st), None);
    }

    #[test]
    fn xml_names_the_architecture_and_the_control_registers() {
        let xml = Layout::X86_64.target_xml();
        assert!(xml.contains("<architecture>i386:x86-64</architecture>"));
        assert!(xml.contains("name=\"cr3\" bitsize=\"64\""));
        assert_eq!(xml.matches("<feature ").count(), 4);
        assert!(Layout::I386.target_xml().contains("name=\"eip\""));
    }
}
