#!/usr/bin/env python3
"""Static checks of the built test guests (`make check`).

For each OUT/NAME.bin: an ELF32 i386 executable whose PT_LOAD segments sit at
1 MiB; a Multiboot 1 header in the first 8 KiB, 4-byte aligned, with the
right magic, flags and checksum; for a.out-kludge guests, header fields that
agree with the ELF file (header_addr/load_addr map to the header's file
offset, load_end_addr = end of data, bss_end_addr = end of bss, entry inside
the text and equal to e_entry); and no instruction the KVM emulator used
here cannot run (SSE, x87, xsave, int3, cmpxchg16b, and
lsl/lar, which its emulator lacks).
"""
import re
import struct
import subprocess
import sys

MB_MAGIC = 0x1BADB002
KLUDGE = 1 << 16
LOAD_ADDR = 0x100000
# Guests: (uses the a.out kludge, ELF class); keep in step with the Makefile.
GUESTS = {
    "hello": (True, 32),
    "hello64": (True, 64),
    "grind": (True, 32),
    "entry": (False, 32),
    "fault": (False, 32),
    "halt": (False, 32),
}
BAD_MNEMONIC = re.compile(r"^(f\w+|int3|lsl|lar|xsave\w*|xrstor\w*|[ls]dmxcsr|cmpxchg16b|emms)$")
PREFIXES = {"lock", "rep", "repz", "repnz", "data16", "addr16", "cs", "ds", "es", "fs", "gs", "ss"}
BAD_OPERAND = re.compile(r"%[xy]mm|%mm\d|%st")


def forbidden(insn):
    """Is this objdump instruction text SSE, x87, xsave, int3 or cmpxchg16b?"""
    words = [w for w in insn.split() if w not in PREFIXES]
    return bool(words) and (BAD_MNEMONIC.match(words[0]) or BAD_OPERAND.search(insn))


def fail(name, msg):
    print(f"FAIL {name}: {msg}")
    return 1


def program_headers(data, elf_class):
    """(e_entry, [(offset, vaddr, paddr, filesz, memsz) of each PT_LOAD])."""
    if elf_class == 32:
        e_entry, e_phoff = struct.unpack_from("<II", data, 24)
        e_phentsize, e_phnum = struct.unpack_from("<HH", data, 42)
        phdr = lambda off: struct.unpack_from("<IIIIII", data, off)
    else:
        e_entry, e_phoff = struct.unpack_from("<QQ", data, 24)
        e_phentsize, e_phnum = struct.unpack_from("<HH", data, 54)
        phdr = lambda off: (lambda t, _f, *rest: (t,) + tuple(rest[:5]))(
            *struct.unpack_from("<IIQQQQQ", data, off))
    loads = []
    for i in range(e_phnum):
        p_type, off, vaddr, paddr, filesz, memsz = phdr(e_phoff + i * e_phentsize)
        if p_type == 1:
            loads.append((off, vaddr, paddr, filesz, memsz))
    return e_entry, loads


def check(path, name, kludge, elf_class):
    data = open(path, "rb").read()
    machine = struct.unpack_from("<H", data, 18)[0]
    if (data[:4] != b"\x7fELF" or data[4] != elf_class // 32
            or machine != (3 if elf_class == 32 else 62)):
        return fail(name, f"not an ELF{elf_class} x86 file")
    e_entry, loads = program_headers(data, elf_class)
    if not loads or min(l[2] for l in loads) != LOAD_ADDR:
        return fail(name, f"PT_LOAD segments do not start at 1 MiB: {loads}")

    hdr = None
    for off in range(0, min(len(data), 8192) - 11, 4):
        magic, flags, csum = struct.unpack_from("<III", data, off)
        if magic == MB_MAGIC and (magic + flags + csum) & 0xFFFFFFFF == 0:
            hdr = off
            break
    if hdr is None:
        return fail(name, "no multiboot header with a valid checksum in the first 8 KiB")
    flags = struct.unpack_from("<I", data, hdr + 4)[0]
    want = 0x3 | (KLUDGE if kludge else 0)
    if flags != want:
        return fail(name, f"flags 0x{flags:x}, want 0x{want:x}")

    syms = {}
    for line in subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms[parts[2]] = int(parts[0], 16)

    if kludge:
        header_addr, load_addr, load_end, bss_end, entry = struct.unpack_from("<5I", data, hdr + 12)
        off, vaddr, paddr, filesz, memsz = loads[0]
        text_end = syms["_etext"] if "_etext" in syms else vaddr + filesz
        problems = []
        if load_addr != LOAD_ADDR:
            problems.append(f"load_addr 0x{load_addr:x}")
        if hdr - (header_addr - load_addr) != off:
            problems.append("header_addr does not map to the header's file offset")
        if load_end != paddr + filesz or load_end != syms["_edata"]:
            problems.append(f"load_end_addr 0x{load_end:x} != end of data 0x{paddr + filesz:x}")
        if bss_end != paddr + memsz or bss_end != syms["_end"]:
            problems.append(f"bss_end_addr 0x{bss_end:x} != end of bss 0x{paddr + memsz:x}")
        if entry != e_entry or entry != syms["_start"] or not load_addr <= entry < text_end:
            problems.append(f"entry_addr 0x{entry:x} (e_entry 0x{e_entry:x})")
        if problems:
            return fail(name, "; ".join(problems))

    # Always disassemble as 32-bit code (an ELF64 container still holds it).
    dis = subprocess.run(["objdump", "-d", "-M", "i386", "--no-show-raw-insn", path],
                         capture_output=True, text=True, check=True).stdout
    # Skip the multiboot header at the start of .text: it is data, not code.
    # objdump abbreviates runs of zero bytes as a "\t..." line: no address.
    bad = [l.strip() for l in dis.splitlines()
           if "\t" in l and re.fullmatch(r"\s*[0-9a-f]+", l.split(":")[0])
           and int(l.split(":")[0], 16) >= syms["_start"]
           and forbidden(l.split("\t", 1)[1])]
    if bad:
        return fail(name, "instructions the emulator cannot run: " + "; ".join(bad[:5]))

    print(f"ok   {name}: header at file offset 0x{hdr:x}, flags 0x{flags:x}")
    return 0


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "build"
    failures = sum(check(f"{out}/{n}.bin", n, *kind) for n, kind in GUESTS.items())
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
