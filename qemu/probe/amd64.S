/*
 * The payload of qemu.ProbeAccel for x86_64: a flat multiboot kernel that QEMU loads with
 * -kernel. It enters long mode with paging, touches 60 MiB of guest memory three times,
 * runs 20 million multiplications and then writes "LABPROBEOK" to COM1.
 *
 * Why so much work: on some hosts (nested virtualisation) /dev/kvm opens and a KVM guest
 * starts, runs the firmware and even reaches long mode, but then executes so slowly that a
 * Linux boot never finishes. Measured on such a host: this payload prints nothing in 30 s
 * under KVM, while TCG prints the marker in about 0.2 s. A probe that only checked that
 * the guest starts would pick KVM there.
 *
 * Rebuild amd64.bin after editing: go generate ./qemu/   (needs binutils)
 */
	.intel_syntax noprefix
	.code32
	.set LOAD,       0x100000
	.set MB_MAGIC,   0x1BADB002
	.set MB_FLAGS,   0x00010000          /* bit 16: load addresses are in the header */
	.set PML4,       0x200000
	.set PDPT,       0x201000
	.set PD,         0x202000
	.set TOUCH_FROM, 0x400000
	.set TOUCH_TO,   0x4000000           /* 60 MiB, needs -m 128 */
	.set COM1,       0x3f8

	.text
	.globl _start
_start:
header:
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)
	.long LOAD + (header - _start)       /* header_addr */
	.long LOAD                           /* load_addr */
	.long LOAD + (end - _start)          /* load_end_addr */
	.long LOAD + (end - _start)          /* bss_end_addr */
	.long LOAD + (entry32 - _start)      /* entry_addr */

entry32:
	cli
	/* Zero the three page-table pages. */
	mov edi, PML4
	xor eax, eax
	mov ecx, 3 * 1024
	rep stosd
	/* Identity-map the first GiB with 2 MiB pages. */
	mov dword ptr [PML4], PDPT | 3
	mov dword ptr [PDPT], PD | 3
	mov edi, PD
	mov eax, 0x83                       /* present, writable, 2 MiB */
	mov ecx, 512
1:	mov dword ptr [edi], eax
	add eax, 0x200000
	add edi, 8
	loop 1b
	/* PAE, then EFER.LME, then paging: long mode (compatibility). */
	mov eax, cr4
	or eax, 1 << 5
	mov cr4, eax
	mov eax, PML4
	mov cr3, eax
	mov ecx, 0xC0000080
	rdmsr
	or eax, 1 << 8
	wrmsr
	mov eax, cr0
	or eax, 1 << 31
	mov cr0, eax
	lgdt [LOAD + (gdtr - _start)]
	ljmp 0x08, LOAD + (entry64 - _start)

	.code64
entry64:
	/* Write one qword per 4 KiB page, three times over. */
	mov edx, 3
2:	mov rdi, TOUCH_FROM
3:	mov qword ptr [rdi], rdi
	add rdi, 4096
	cmp rdi, TOUCH_TO
	jb 3b
	dec edx
	jnz 2b
	/* Some plain computation. */
	mov ecx, 20000000
4:	imul rax, rax, 3
	dec ecx
	jnz 4b
	/* Say so on COM1. */
	lea rsi, [rip + msg]
	mov dx, COM1
5:	lodsb
	test al, al
	jz 6f
	out dx, al
	jmp 5b
6:	cli
	hlt
	jmp 6b

	.p2align 3
gdt:
	.quad 0
	.quad 0x00209A0000000000             /* 0x08: 64-bit code */
	.quad 0x0000920000000000             /* 0x10: data */
gdtr:
	.word gdtr - gdt - 1
	.long LOAD + (gdt - _start)
msg:
	.asciz "LABPROBEOK\n"
end:
