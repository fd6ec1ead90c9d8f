//! A PTX emulator: runs kernels read by [`super::ptx`] on the CPU, so that GPU bundles are
//! checked against the interpreter on machines without a GPU (CI, and any user's laptop).
//!
//! Blocks run one after another; the threads of a block run one at a time (first to last in
//! even blocks, last to first in odd ones, so that a missing barrier shows), each until it
//! exits or reaches a synchronization point (`bar.sync`: all live threads of its block;
//! `shfl.sync`: all live threads of its warp of 32), where it waits until the others arrive.
//! Threads that have exited no longer count (as on sm_70 and later). Threads that wait at
//! different kinds of points (a barrier and a shuffle) are reported as a deadlock. Every access is checked
//! against the allocation it falls in and its alignment: an access a GPU would silently allow
//! out of a buffer's bounds is an error here, with the kernel, the PTX line and the thread.
//!
//! Not modeled: the inaccuracy of approximate instructions (`ex2.approx` is computed as
//! `exp2`), data races between blocks (blocks run in order), timing.

use super::ptx::{Arith, Base, BoolOp, Cmp, Half, Kernel, Kind, Operand, Round, Shuffle, Space, Special, Ty, UCmp};

/// `a + b + carry` or `a - b - borrow` in `bits` bits: the result and the carry (borrow) out.
fn add_with_carry(subtract: bool, bits: u32, a: u64, b: u64, carry: bool) -> (u64, bool) {
    let (a, b, c) = (u128::from(a & mask(bits)), u128::from(b & mask(bits)), u128::from(carry));
    if subtract {
        (a.wrapping_sub(b + c) as u64 & mask(bits), a < b + c)
    } else {
        let sum = a + b + c;
        (sum as u64 & mask(bits), sum >> bits != 0)
    }
}

/// Where global allocations start; each is 256-byte aligned (as the CUDA driver's) and followed
/// by a 256-byte gap so that running off one buffer never lands in the next.
const GLOBAL_BASE: u64 = 1 << 32;
/// The generic addresses of the block's shared memory and the thread's local memory.
const SHARED_BASE: u64 = 1 << 48;
const LOCAL_BASE: u64 = 1 << 47;
const WARP: usize = 32;

/// The emulated device's global memory.
#[derive(Default)]
pub struct Memory {
    /// Allocations by increasing base address.
    allocations: Vec<(u64, Vec<u8>)>,
}

impl Memory {
    /// Allocates `bytes` zeroed bytes; their address.
    pub fn alloc(&mut self, bytes: usize) -> u64 {
        let base = self.allocations.last().map_or(GLOBAL_BASE, |(b, d)| (b + d.len() as u64 + 256).div_ceil(256) * 256);
        self.allocations.push((base, vec![0; bytes]));
        base
    }

    /// Frees the allocation at `base` (as returned by [`Memory::alloc`]).
    pub fn free(&mut self, base: u64) {
        self.allocations.retain(|a| a.0 != base);
    }

    /// The bytes from `address` to the end of the allocation it falls in; `None` when it falls
    /// in none.
    pub fn available(&self, address: u64) -> Option<u64> {
        let i = self.allocations.partition_point(|a| a.0 <= address).checked_sub(1)?;
        let (base, data) = &self.allocations[i];
        let end = base + data.len() as u64;
        (address < end).then(|| end - address)
    }

    /// The bytes of the allocation at `base` (as returned by [`Memory::alloc`]).
    pub fn bytes(&self, base: u64) -> &[u8] {
        &self.allocations.iter().find(|a| a.0 == base).expect("an allocation").1
    }

    pub fn bytes_mut(&mut self, base: u64) -> &mut [u8] {
        &mut self.allocations.iter_mut().find(|a| a.0 == base).expect("an allocation").1
    }

    /// Copies the bytes at `[address, address + out.len())` into `out`; `None` when they do not
    /// lie in one allocation.
    pub fn read(&mut self, address: u64, out: &mut [u8]) -> Option<()> {
        let (data, offset) = self.find(address, out.len() as u64)?;
        out.copy_from_slice(&data[offset..offset + out.len()]);
        Some(())
    }

    /// The allocation holding `[address, address + len)` and the offset in it.
    fn find(&mut self, address: u64, len: u64) -> Option<(&mut Vec<u8>, usize)> {
        let i = self.allocations.partition_point(|a| a.0 <= address).checked_sub(1)?;
        let (base, data) = &mut self.allocations[i];
        let offset = address - *base;
        (offset + len <= data.len() as u64).then_some((data, offset as usize))
    }
}

/// Computes a library product ([`super::Gemm`]) as cuBLAS does, on the operands at
/// `[a, b, c]`: each element of c (zero first unless the product accumulates) accumulates its
/// k products in order, fused in f32 or f64.
pub fn gemm(memory: &mut Memory, g: &super::Gemm, [a, b, c]: [u64; 3]) -> Result<(), String> {
    let [a_bytes, b_bytes, c_bytes] = g.bytes();
    let mut read = |address: u64, bytes: u64| -> Result<Vec<f64>, String> {
        let (data, o) = memory
            .find(address, bytes)
            .ok_or(format!("a product's operand at {address:#x} is outside every buffer"))?;
        let data = &data[o..o + bytes as usize];
        Ok(match g.dtype {
            super::DType::F64 => data.chunks_exact(8).map(|x| f64::from_le_bytes(x.try_into().unwrap())).collect(),
            _ => data.chunks_exact(4).map(|x| f64::from(f32::from_le_bytes(x.try_into().unwrap()))).collect(),
        })
    };
    let (av, bv) = (read(a, a_bytes)?, read(b, b_bytes)?);
    let mut cv = if g.accumulate { read(c, c_bytes)? } else { vec![0.0; (c_bytes / g.dtype.size()) as usize] };
    let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
    for batch in 0..g.batch as usize {
        let (a, b) = (&av[batch * m * k..], &bv[batch * k * n..]);
        for i in 0..m {
            for j in 0..n {
                let out = &mut cv[batch * m * n + i * n + j];
                for p in 0..k {
                    let x = if g.a_transposed { a[p * m + i] } else { a[i * k + p] };
                    *out = match g.dtype {
                        super::DType::F64 => x.mul_add(b[p * n + j], *out),
                        _ => f64::from((x as f32).mul_add(b[p * n + j] as f32, *out as f32)),
                    };
                }
            }
        }
    }
    let (data, o) = memory.find(c, c_bytes).expect("found above");
    for (chunk, v) in data[o..o + c_bytes as usize].chunks_exact_mut(g.dtype.size() as usize).zip(cv) {
        match g.dtype {
            super::DType::F64 => chunk.copy_from_slice(&v.to_le_bytes()),
            _ => chunk.copy_from_slice(&(v as f32).to_le_bytes()),
        }
    }
    Ok(())
}

/// The state of a thread between instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ready,
    AtBarrier,
    AtShuffle,
    Done,
}

struct Thread {
    regs: Vec<u64>,
    /// The carry (or borrow) flag of extended-precision arithmetic.
    carry: bool,
    pc: usize,
    state: State,
    local: Vec<u8>,
    tid: [u32; 3],
}

/// The fixed facts of one launch.
struct Launch<'a> {
    kernel: &'a Kernel,
    grid: [u32; 3],
    block: [u32; 3],
    params: Vec<u8>,
    /// Instructions a thread may run before the launch is reported as not finishing.
    budget: u64,
}

/// Runs `kernel` over `grid` blocks of `block` threads with `args` (one 64-bit value per
/// parameter: pointers and integers) on `memory`.
pub fn launch(
    memory: &mut Memory,
    kernel: &Kernel,
    grid: [u32; 3],
    block: [u32; 3],
    args: &[u64],
) -> Result<(), String> {
    let name = &kernel.name;
    if args.len() != kernel.params.len() {
        return Err(format!("`{name}` takes {} parameters, launched with {}", kernel.params.len(), args.len()));
    }
    if let Some(max) = kernel.max_threads {
        if block.iter().zip(&max).any(|(b, m)| b > m) {
            return Err(format!("`{name}` launched with block {block:?}, more than its .maxntid {max:?}"));
        }
    }
    if let Some(required) = kernel.required_threads.filter(|r| *r != block) {
        return Err(format!("`{name}` launched with block {block:?}, its .reqntid is {required:?}"));
    }
    let threads: u64 = block.iter().map(|&b| u64::from(b)).product();
    let within =
        |d: [u32; 3], limits: [u64; 3]| d.iter().zip(limits).all(|(&x, max)| (1..=max).contains(&u64::from(x)));
    if threads > 1024 || !within(grid, super::GRID_LIMITS) || !within(block, super::BLOCK_LIMITS) {
        return Err(format!("`{name}` launched with grid {grid:?} and block {block:?}"));
    }
    let mut params = vec![0u8; kernel.param_bytes as usize];
    for (p, v) in kernel.params.iter().zip(args) {
        let (o, n) = (p.offset as usize, p.size as usize);
        params[o..o + n].copy_from_slice(&v.to_le_bytes()[..n]);
    }
    let launch = Launch { kernel, grid, block, params, budget: 1 << 32 };
    for z in 0..grid[2] {
        for y in 0..grid[1] {
            for x in 0..grid[0] {
                launch.block(memory, [x, y, z])?;
            }
        }
    }
    Ok(())
}

/// An error at an instruction of a thread.
fn fault(l: &Launch, ctaid: [u32; 3], t: &Thread, what: impl std::fmt::Display) -> String {
    let line = l.kernel.code.get(t.pc).map_or(0, |i| i.line);
    format!("`{}` (PTX line {line}), block {ctaid:?} thread {:?}: {what}", l.kernel.name, t.tid)
}

impl Launch<'_> {
    fn block(&self, memory: &mut Memory, ctaid: [u32; 3]) -> Result<(), String> {
        let k = self.kernel;
        let mut shared = vec![0u8; k.shared_bytes as usize];
        let mut threads: Vec<Thread> = (0..self.block[2])
            .flat_map(|z| (0..self.block[1]).flat_map(move |y| (0..self.block[0]).map(move |x| [x, y, z])))
            .map(|tid| Thread {
                regs: vec![0; k.registers],
                carry: false,
                pc: 0,
                state: State::Ready,
                local: vec![0; k.local_bytes as usize],
                tid,
            })
            .collect();
        // Odd blocks run their threads last to first between synchronization points, so that
        // a value read without the barrier that should order it after its write is read
        // before the write in one of the two orders.
        let reverse = (ctaid[0] + ctaid[1] + ctaid[2]) % 2 == 1;
        loop {
            for i in 0..threads.len() {
                let i = if reverse { threads.len() - 1 - i } else { i };
                let t = &mut threads[i];
                if t.state == State::Ready {
                    self.run(memory, &mut shared, ctaid, (i % WARP) as u32, t)?;
                }
            }
            if threads.iter().all(|t| t.state == State::Done) {
                return Ok(());
            }
            if self.shuffle(&mut threads, ctaid)? {
                continue;
            }
            if threads.iter().all(|t| matches!(t.state, State::Done | State::AtBarrier)) {
                for t in threads.iter_mut().filter(|t| t.state == State::AtBarrier) {
                    t.state = State::Ready;
                    t.pc += 1;
                }
                continue;
            }
            let mut lines: Vec<usize> =
                threads.iter().filter(|t| t.state != State::Done).map(|t| k.code[t.pc].line).collect();
            lines.sort_unstable();
            lines.dedup();
            return Err(format!(
                "`{}`, block {ctaid:?}: threads wait at different synchronization points (PTX lines {lines:?})",
                k.name
            ));
        }
    }

    /// Completes the `shfl.sync` of every warp whose live threads all wait at one; whether any did.
    fn shuffle(&self, threads: &mut [Thread], ctaid: [u32; 3]) -> Result<bool, String> {
        let mut progress = false;
        for warp in threads.chunks_mut(WARP) {
            let live: Vec<usize> = (0..warp.len()).filter(|&i| warp[i].state != State::Done).collect();
            if live.is_empty() || live.iter().any(|&i| warp[i].state != State::AtShuffle) {
                continue;
            }
            let pc = warp[live[0]].pc;
            if let Some(&i) = live.iter().find(|&&i| warp[i].pc != pc) {
                return Err(fault(self, ctaid, &warp[i], "threads of a warp shuffle at different instructions"));
            }
            let inst = &self.kernel.code[pc];
            let Kind::Shfl(mode) = inst.kind else { unreachable!("threads wait at shuffles") };
            let values: Vec<u64> = warp.iter().map(|t| read(t, &inst.operands[1])).collect();
            for &i in &live {
                let t = &warp[i];
                let (b, c) = (read(t, &inst.operands[2]) as u32, read(t, &inst.operands[3]) as u32);
                let (lane, bval, cval, segmask) = (i as u32, b & 0x1f, c & 0x1f, (c >> 8) & 0x1f);
                let max_lane = (lane & segmask) | (cval & !segmask);
                let min_lane = lane & segmask;
                let (j, valid) = match mode {
                    Shuffle::Up => (lane.wrapping_sub(bval), lane >= min_lane + bval),
                    Shuffle::Down => (lane + bval, lane + bval <= max_lane),
                    Shuffle::Butterfly => (lane ^ bval, (lane ^ bval) <= max_lane),
                    Shuffle::Index => (min_lane | (bval & !segmask), (min_lane | (bval & !segmask)) <= max_lane),
                };
                let j = if valid && (j as usize) < warp.len() { j as usize } else { i };
                let t = &mut warp[i];
                match inst.operands[0] {
                    Operand::Pair(d, p) => {
                        t.regs[d as usize] = values[j];
                        t.regs[p as usize] = u64::from(valid);
                    }
                    Operand::Reg(d) => t.regs[d as usize] = values[j],
                    _ => return Err(fault(self, ctaid, t, "a shuffle's destination is not a register")),
                }
                t.state = State::Ready;
                t.pc += 1;
            }
            progress = true;
        }
        Ok(progress)
    }

    /// Runs one thread until it exits or waits.
    fn run(
        &self,
        memory: &mut Memory,
        shared: &mut [u8],
        ctaid: [u32; 3],
        lane: u32,
        t: &mut Thread,
    ) -> Result<(), String> {
        let code = &self.kernel.code;
        let mut steps = 0u64;
        loop {
            let Some(inst) = code.get(t.pc) else {
                t.state = State::Done;
                return Ok(());
            };
            steps += 1;
            if steps > self.budget {
                return Err(fault(self, ctaid, t, format!("still running after {} instructions", self.budget)));
            }
            if let Some((p, want)) = inst.guard {
                if (t.regs[p as usize] != 0) != want {
                    t.pc += 1;
                    continue;
                }
            }
            let ops = &inst.operands;
            match inst.kind {
                Kind::Bra => {
                    let Operand::Label(target) = ops[0] else { unreachable!("checked when read") };
                    t.pc = target;
                    continue;
                }
                Kind::Ret => {
                    t.state = State::Done;
                    return Ok(());
                }
                Kind::Bar => {
                    t.state = State::AtBarrier;
                    return Ok(());
                }
                Kind::Shfl(_) => {
                    t.state = State::AtShuffle;
                    return Ok(());
                }
                Kind::Ld { space, ty } => {
                    let address = self.address(t, &ops[1], ctaid, lane);
                    let regs = registers(&ops[0]);
                    let width = self.aligned(t, ctaid, address, ty, regs.len())?;
                    for (n, r) in regs.iter().enumerate() {
                        let at = address.wrapping_add(n as u64 * width);
                        let mut bytes = [0u8; 8];
                        match (space, self.slot(memory, shared, &mut t.local, space, at, width)) {
                            (Space::Param, _) => match self.params.get(at as usize..(at + width) as usize) {
                                Some(p) => bytes[..p.len()].copy_from_slice(p),
                                None => return Err(outside(self, ctaid, t, space, at, width)),
                            },
                            (_, Some(m)) => bytes[..m.len()].copy_from_slice(m),
                            (_, None) => return Err(outside(self, ctaid, t, space, at, width)),
                        }
                        t.regs[*r as usize] = extend(ty, u64::from_le_bytes(bytes));
                    }
                }
                Kind::St { space, ty } => {
                    let address = self.address(t, &ops[0], ctaid, lane);
                    let mut values = [0u64; 4];
                    let count = match &ops[1] {
                        Operand::Vector(regs) => {
                            for (v, &r) in values.iter_mut().zip(regs) {
                                *v = t.regs[r as usize];
                            }
                            regs.len().min(4)
                        }
                        o => {
                            values[0] = self.value(t, o, ctaid, lane);
                            1
                        }
                    };
                    let width = self.aligned(t, ctaid, address, ty, count)?;
                    for (n, v) in values[..count].iter().enumerate() {
                        let at = address.wrapping_add(n as u64 * width);
                        match self.slot(memory, shared, &mut t.local, space, at, width) {
                            Some(m) if space != Space::Param => m.copy_from_slice(&v.to_le_bytes()[..m.len()]),
                            _ => return Err(outside(self, ctaid, t, space, at, width)),
                        }
                    }
                }
                _ => {
                    let v = |i: usize| self.value(t, &ops[i], ctaid, lane);
                    let result = match inst.kind {
                        Kind::Arith { op, ty, round, ftz, sat } => {
                            let mut args = [0; 3];
                            for (a, o) in args.iter_mut().zip(&ops[1..]) {
                                *a = self.value(t, o, ctaid, lane);
                            }
                            arith(op, ty, round, ftz, sat, args).map_err(|e| fault(self, ctaid, t, e))?
                        }
                        Kind::Setp { cmp, ty, combine } => {
                            let c = compare(cmp, ty, v(1), v(2));
                            let combined = |c: bool| match combine {
                                Some(op) => logic(op, c, v(3) != 0),
                                None => c,
                            };
                            let (yes, no) = (combined(c), combined(!c));
                            if let Operand::Pair(_, q) = ops[0] {
                                t.regs[q as usize] = u64::from(no);
                            }
                            u64::from(yes)
                        }
                        Kind::Selp(_) => {
                            if v(3) != 0 {
                                v(1)
                            } else {
                                v(2)
                            }
                        }
                        Kind::Carry { subtract, carry_in, carry_out, ty } => {
                            let (r, c) = add_with_carry(subtract, ty.bits(), v(1), v(2), carry_in && t.carry);
                            if carry_out {
                                t.carry = c;
                            }
                            r
                        }
                        // `mov.b64 %rd, {%r1, %r2}` packs registers, the first lowest.
                        Kind::Mov(ty) => match &ops[1] {
                            Operand::Vector(regs) => {
                                let width = ty.bits() / regs.len() as u32;
                                regs.iter().rev().fold(0, |acc, &r| acc << width | (t.regs[r as usize] & mask(width)))
                            }
                            o => self.value(t, o, ctaid, lane),
                        },
                        Kind::Cvta => v(1),
                        Kind::Cvt { to, from, round, integral, sat } => convert(to, from, round, integral, sat, v(1)),
                        _ => unreachable!("handled above"),
                    };
                    match &ops[0] {
                        Operand::Reg(d) | Operand::Pair(d, _) => t.regs[*d as usize] = result,
                        // `mov.b64 {%r1, %r2}, %rd` splits a value, the lowest bits first.
                        Operand::Vector(regs) => {
                            let width = inst_width(inst.kind) / regs.len() as u32;
                            for (k, &r) in regs.iter().enumerate() {
                                t.regs[r as usize] = (result >> (k as u32 * width)) & mask(width);
                            }
                        }
                        _ => unreachable!("checked when read"),
                    }
                }
            }
            t.pc += 1;
        }
    }

    /// An operand's value: a register, an immediate, a special register or a symbol's address.
    fn value(&self, t: &Thread, o: &Operand, ctaid: [u32; 3], lane: u32) -> u64 {
        match *o {
            Operand::Special(s) => u64::from(match s {
                Special::Tid(i) => t.tid[i],
                Special::Ntid(i) => self.block[i],
                Special::Ctaid(i) => ctaid[i],
                Special::Nctaid(i) => self.grid[i],
                Special::Laneid => lane,
                Special::WarpSize => WARP as u32,
            }),
            Operand::Symbol(base) => self.base(t, base),
            _ => read(t, o),
        }
    }

    fn base(&self, t: &Thread, base: Base) -> u64 {
        match base {
            Base::Reg(r) => t.regs[r as usize],
            Base::Param(o) => o,
            Base::Shared(o) => SHARED_BASE + o,
            Base::Local(o) => LOCAL_BASE + o,
            Base::Absolute(a) => a,
        }
    }

    fn address(&self, t: &Thread, o: &Operand, ctaid: [u32; 3], lane: u32) -> u64 {
        match *o {
            Operand::Addr { base, offset } => self.base(t, base).wrapping_add(offset as u64),
            _ => self.value(t, o, ctaid, lane),
        }
    }

    /// The bytes of one element of an access of `count` elements of `ty` at `address`, which
    /// must be aligned to the whole access (vector accesses align to their size, as on the GPU).
    fn aligned(&self, t: &Thread, ctaid: [u32; 3], address: u64, ty: Ty, count: usize) -> Result<u64, String> {
        let width = u64::from(ty.bits().max(8) / 8);
        if !address.is_multiple_of(width * count as u64) {
            return Err(fault(
                self,
                ctaid,
                t,
                format!("misaligned {}-byte access at {address:#x}", width * count as u64),
            ));
        }
        Ok(width)
    }

    /// The `width` bytes at `address` of `space` (global, shared or local; generic addresses
    /// say which), or `None` outside every buffer of that space.
    fn slot<'m>(
        &self,
        memory: &'m mut Memory,
        shared: &'m mut [u8],
        local: &'m mut [u8],
        space: Space,
        address: u64,
        width: u64,
    ) -> Option<&'m mut [u8]> {
        let window = |data: &'m mut [u8], base: u64| {
            data.get_mut(address.checked_sub(base)? as usize..)?.get_mut(..width as usize)
        };
        match space {
            Space::Param => None,
            Space::Shared => window(shared, SHARED_BASE),
            Space::Local => window(local, LOCAL_BASE),
            Space::Generic if address >= SHARED_BASE => window(shared, SHARED_BASE),
            Space::Generic if address >= LOCAL_BASE => window(local, LOCAL_BASE),
            Space::Global | Space::Generic => {
                let (data, o) = memory.find(address, width)?;
                Some(&mut data[o..o + width as usize])
            }
        }
    }
}

fn outside(l: &Launch, ctaid: [u32; 3], t: &Thread, space: Space, address: u64, width: u64) -> String {
    fault(l, ctaid, t, format!("{width}-byte access at {address:#x} is outside every {space:?} buffer"))
}

/// The width of an instruction's destination type (64 for those without one).
fn inst_width(kind: Kind) -> u32 {
    match kind {
        Kind::Mov(ty) | Kind::Selp(ty) => ty.bits(),
        Kind::Arith { ty, .. } | Kind::Carry { ty, .. } => ty.bits(),
        Kind::Cvt { to, .. } => to.bits(),
        _ => 64,
    }
}

/// A register or immediate operand's bits.
fn read(t: &Thread, o: &Operand) -> u64 {
    match *o {
        Operand::Reg(r) => t.regs[r as usize],
        Operand::Imm(v) => v,
        _ => 0,
    }
}

/// The registers a load writes.
fn registers(o: &Operand) -> &[u32] {
    match o {
        Operand::Vector(regs) => regs,
        Operand::Reg(r) | Operand::Pair(r, _) => std::slice::from_ref(r),
        _ => &[],
    }
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// `v` read as type `ty`: signed types sign-extended to 64 bits, others zero-extended.
fn extend(ty: Ty, v: u64) -> u64 {
    let b = ty.bits();
    match ty {
        Ty::S(_) if b < 64 => (((v << (64 - b)) as i64) >> (64 - b)) as u64,
        Ty::Pred => u64::from(v & 1 != 0),
        _ => v & mask(b),
    }
}

fn f32_of(v: u64) -> f32 {
    f32::from_bits(v as u32)
}

/// The value of a float register of type `ty` (f32 flushed when `ftz`).
fn float_value(ty: Ty, v: u64, ftz: bool) -> f64 {
    match ty {
        Ty::F64 => f64::from_bits(v),
        Ty::F16 => f64::from(half::f16::from_bits(v as u16)),
        Ty::BF16 => f64::from(half::bf16::from_bits(v as u16)),
        _ => f64::from(flush(f32_of(v), ftz)),
    }
}

/// `x` rounded to the float type `ty` (to nearest even), as register bits.
fn float_bits(ty: Ty, x: f64, ftz: bool) -> u64 {
    match ty {
        Ty::F64 => x.to_bits(),
        Ty::F16 => u64::from(half::f16::from_f64(x).to_bits()),
        Ty::BF16 => u64::from(half::bf16::from_f64(x).to_bits()),
        _ => u64::from(flush(x as f32, ftz).to_bits()),
    }
}

/// Flushes a subnormal f32 to zero of the same sign (`.ftz`).
fn flush(x: f32, ftz: bool) -> f32 {
    if ftz && x.is_subnormal() {
        0.0f32.copysign(x)
    } else {
        x
    }
}

fn logic(op: BoolOp, a: bool, b: bool) -> bool {
    match op {
        BoolOp::And => a & b,
        BoolOp::Or => a | b,
        BoolOp::Xor => a ^ b,
    }
}

/// The float operations, computed in f64 and rounded to the type; f32 through `f32` itself
/// where double rounding could differ (add, mul, div, fma, sqrt).
fn float(op: Arith, f64_: bool, round: Round, a: f64, b: f64, c: f64) -> Result<f64, String> {
    if round != Round::Nearest && !matches!(op, Arith::Min | Arith::Max | Arith::Abs | Arith::Neg) {
        return Err(format!("{op:?} with directed rounding is not supported by the emulator"));
    }
    let single = |x: f64| x as f32;
    Ok(match op {
        Arith::Add if f64_ => a + b,
        Arith::Add => f64::from(single(a) + single(b)),
        Arith::Sub if f64_ => a - b,
        Arith::Sub => f64::from(single(a) - single(b)),
        Arith::Mul(_) if f64_ => a * b,
        Arith::Mul(_) => f64::from(single(a) * single(b)),
        Arith::Fma if f64_ => a.mul_add(b, c),
        Arith::Fma => f64::from(single(a).mul_add(single(b), single(c))),
        Arith::Div if f64_ => a / b,
        Arith::Div => f64::from(single(a) / single(b)),
        Arith::Sqrt if f64_ => a.sqrt(),
        Arith::Sqrt => f64::from(single(a).sqrt()),
        Arith::MinNan | Arith::MaxNan if a.is_nan() || b.is_nan() => f64::NAN,
        // -0 is below +0 (IEEE 754-2019 minimum and maximum: LLVM selects min/max.NaN for
        // llvm.minimum/maximum, which order the zeros so); Rust's min and max may return
        // either zero.
        Arith::Min | Arith::MinNan if a == b => {
            if a.is_sign_negative() {
                a
            } else {
                b
            }
        }
        Arith::Max | Arith::MaxNan if a == b => {
            if a.is_sign_negative() {
                b
            } else {
                a
            }
        }
        Arith::Min => a.min(b),
        Arith::Max => a.max(b),
        Arith::MinNan => a.min(b),
        Arith::MaxNan => a.max(b),
        Arith::Abs => a.abs(),
        Arith::Neg => -a,
        Arith::Copysign => b.copysign(a),
        Arith::Rcp => 1.0 / a,
        Arith::Rsqrt => 1.0 / a.sqrt(),
        Arith::Ex2 => a.exp2(),
        Arith::Lg2 => a.log2(),
        Arith::Sin => a.sin(),
        Arith::Cos => a.cos(),
        Arith::Tanh => a.tanh(),
        _ => return Err(format!("{op:?} on floats")),
    })
}

/// An arithmetic or logic instruction on operand bits `[a, b, c]`.
fn arith(op: Arith, ty: Ty, round: Round, ftz: bool, sat: bool, [a, b, c]: [u64; 3]) -> Result<u64, String> {
    if ty.is_float() {
        let get = |v: u64| float_value(ty, v, ftz);
        let mut r = float(op, ty == Ty::F64, round, get(a), get(b), get(c))?;
        if sat {
            r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        }
        return Ok(float_bits(ty, r, ftz));
    }
    if ty == Ty::Pred {
        let (a, b) = (a != 0, b != 0);
        return match op {
            Arith::Logic(l) => Ok(u64::from(logic(l, a, b))),
            Arith::Not => Ok(u64::from(!a)),
            _ => Err(format!("{op:?} on predicates")),
        };
    }
    let bits = ty.bits();
    let signed = matches!(ty, Ty::S(_));
    let (ua, ub, uc) = (a & mask(bits), b & mask(bits), c & mask(bits));
    let (sa, sb) = (extend(Ty::S(bits), a) as i64, extend(Ty::S(bits), b) as i64);
    // The full product, as a 128-bit integer.
    let product = || -> i128 {
        if signed {
            i128::from(sa) * i128::from(sb)
        } else {
            (u128::from(ua) * u128::from(ub)) as i128
        }
    };
    let r = match op {
        Arith::Add => ua.wrapping_add(ub),
        Arith::Sub => ua.wrapping_sub(ub),
        Arith::Mul(Half::Lo) => ua.wrapping_mul(ub),
        Arith::Mul(Half::Hi) => (product() >> bits) as u64,
        Arith::Mul(Half::Wide) => return Ok(product() as u64 & mask(2 * bits)),
        Arith::Mad(Half::Lo) => ua.wrapping_mul(ub).wrapping_add(uc),
        Arith::Mad(Half::Hi) => ((product() >> bits) as u64).wrapping_add(uc),
        Arith::Mad(Half::Wide) => return Ok((product() as u64).wrapping_add(c) & mask(2 * bits)),
        // Division by zero is undefined in PTX; the emulator gives all ones, as the hardware does
        // for unsigned division.
        Arith::Div if ub == 0 => u64::MAX,
        Arith::Rem if ub == 0 => ua,
        Arith::Div if signed => sa.wrapping_div(sb) as u64,
        Arith::Div => ua / ub,
        Arith::Rem if signed => sa.wrapping_rem(sb) as u64,
        Arith::Rem => ua % ub,
        Arith::Min | Arith::MinNan if signed => sa.min(sb) as u64,
        Arith::Max | Arith::MaxNan if signed => sa.max(sb) as u64,
        Arith::Min | Arith::MinNan => ua.min(ub),
        Arith::Max | Arith::MaxNan => ua.max(ub),
        Arith::Abs => sa.wrapping_abs() as u64,
        Arith::Neg => sa.wrapping_neg() as u64,
        Arith::Not => !ua,
        Arith::Logic(l) => match l {
            BoolOp::And => ua & ub,
            BoolOp::Or => ua | ub,
            BoolOp::Xor => ua ^ ub,
        },
        Arith::Shl => {
            let s = b as u32;
            if s >= bits {
                0
            } else {
                ua << s
            }
        }
        Arith::Shr => {
            let s = (b as u32).min(bits);
            if signed {
                (sa >> s.min(63)) as u64
            } else if s >= bits {
                0
            } else {
                ua >> s
            }
        }
        Arith::Permute => {
            let bytes = ((b & mask(32)) << 32 | (a & mask(32))).to_le_bytes();
            (0..4).fold(0, |d, i| {
                let selector = (c >> (4 * i)) & 0xf;
                let byte = bytes[(selector & 7) as usize];
                let byte = if selector & 8 != 0 {
                    if byte & 0x80 != 0 {
                        0xff
                    } else {
                        0
                    }
                } else {
                    byte
                };
                d | u64::from(byte) << (8 * i)
            })
        }
        Arith::Funnel { left, clamp } => {
            let n = if clamp { (c as u32).min(32) } else { c as u32 & 31 };
            let wide = (b & mask(32)) << 32 | (a & mask(32));
            if left {
                (wide << n) >> 32
            } else {
                wide >> n
            }
        }
        Arith::Bfe => {
            let (start, len) = ((b & 0xff) as u32, (c & 0xff) as u32);
            let field = if start >= bits || len == 0 { 0 } else { (ua >> start) & mask(len.min(bits - start)) };
            let top = start + len.min(bits.saturating_sub(start)) - 1;
            if signed && len > 0 {
                let sign = if start >= bits { ua >> (bits - 1) & 1 } else { ua >> top.min(bits - 1) & 1 };
                if sign == 1 {
                    field | !mask(len.min(bits))
                } else {
                    field
                }
            } else {
                field
            }
        }
        _ => return Err(format!("{op:?} on integers")),
    };
    Ok(r & mask(bits))
}

fn compare(cmp: Cmp, ty: Ty, a: u64, b: u64) -> bool {
    if ty.is_float() {
        let (x, y) = (float_value(ty, a, false), float_value(ty, b, false));
        let nan = x.is_nan() || y.is_nan();
        let ordered = |c: UCmp| match c {
            UCmp::Eq => x == y,
            UCmp::Ne => x != y && !nan,
            UCmp::Lt => x < y,
            UCmp::Le => x <= y,
            UCmp::Gt => x > y,
            UCmp::Ge => x >= y,
        };
        return match cmp {
            Cmp::Eq => ordered(UCmp::Eq),
            Cmp::Ne => ordered(UCmp::Ne),
            Cmp::Lt => ordered(UCmp::Lt),
            Cmp::Le => ordered(UCmp::Le),
            Cmp::Gt => ordered(UCmp::Gt),
            Cmp::Ge => ordered(UCmp::Ge),
            Cmp::Unordered(c) => nan || ordered(c),
            Cmp::Num => !nan,
            Cmp::Nan => nan,
        };
    }
    let key = |v: u64| -> i128 {
        match ty {
            Ty::S(_) => i128::from(extend(ty, v) as i64),
            _ => i128::from(v & mask(ty.bits())),
        }
    };
    let (x, y) = (key(a), key(b));
    match cmp {
        Cmp::Eq => x == y,
        Cmp::Ne => x != y,
        Cmp::Lt => x < y,
        Cmp::Le => x <= y,
        Cmp::Gt => x > y,
        Cmp::Ge => x >= y,
        Cmp::Unordered(_) | Cmp::Num | Cmp::Nan => false,
    }
}

/// Rounds a float to an integral value (`cvt.rni`, `.rzi`, `.rmi`, `.rpi`).
fn integral(x: f64, round: Round) -> f64 {
    match round {
        Round::Nearest => x.round_ties_even(),
        Round::Zero => x.trunc(),
        Round::Down => x.floor(),
        Round::Up => x.ceil(),
    }
}

/// `cvt.to.from`: integers extend or truncate (saturating with `.sat`), floats to integers
/// round then saturate (NaN to 0, as PTX), integers to floats round to nearest.
fn convert(to: Ty, from: Ty, round: Round, integral_: bool, sat: bool, v: u64) -> u64 {
    let as_float = |v: u64| float_value(from, v, false);
    let store_float = |x: f64| float_bits(to, x, false);
    match (from.is_float(), to.is_float()) {
        (true, true) => {
            let x = as_float(v);
            store_float(if integral_ { integral(x, round) } else { x })
        }
        (true, false) => {
            let x = integral(as_float(v), round);
            let r = match to {
                Ty::S(b) => {
                    let (lo, hi) = (-(2f64.powi(b as i32 - 1)), 2f64.powi(b as i32 - 1) - 1.0);
                    if x.is_nan() {
                        0
                    } else {
                        x.clamp(lo, hi) as i64 as u64
                    }
                }
                _ => {
                    if x.is_nan() {
                        0
                    } else {
                        x.clamp(0.0, 2f64.powi(to.bits() as i32) - 1.0) as u64
                    }
                }
            };
            r & mask(to.bits())
        }
        (false, true) => {
            let x = match from {
                Ty::S(_) => {
                    let i = extend(from, v) as i64;
                    if to == Ty::F32 {
                        return u64::from((i as f32).to_bits());
                    }
                    i as f64
                }
                _ => {
                    let u = v & mask(from.bits());
                    if to == Ty::F32 {
                        return u64::from((u as f32).to_bits());
                    }
                    u as f64
                }
            };
            store_float(x)
        }
        (false, false) => {
            let x = extend(from, v);
            if sat {
                let value = if matches!(from, Ty::S(_)) { i128::from(x as i64) } else { i128::from(x) };
                let (lo, hi) = match to {
                    Ty::S(b) => (-(1i128 << (b - 1)), (1i128 << (b - 1)) - 1),
                    _ => (0, (1i128 << to.bits()) - 1),
                };
                value.clamp(lo, hi) as u64 & mask(to.bits())
            } else {
                extend(to, x)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ptx::parse;
    use super::*;

    /// A block-level sum of 256 values: warp butterflies, partials in shared memory, a barrier,
    /// and a second butterfly in the first warp; the threads of block 1 add 1000.
    const SUM: &str = r#"
.version 8.0
.target sm_80
.address_size 64
.shared .align 16 .b8 partials[32];
.visible .entry sum(.param .u64 .ptr .align 1 sum_param_0, .param .u64 .ptr .align 1 sum_param_1)
.reqntid 256, 1, 1
{
	.reg .pred %p<3>;
	.reg .b32 %r<12>;
	.reg .b64 %rd<8>;
	ld.param.b64 %rd1, [sum_param_0];
	ld.param.b64 %rd2, [sum_param_1];
	mov.u32 %r1, %tid.x;
	mov.u32 %r9, %ctaid.x;
	mul.wide.u32 %rd3, %r1, 4;
	add.s64 %rd4, %rd1, %rd3;
	ld.global.b32 %r2, [%rd4];
	mad.lo.s32 %r2, %r9, 1000, %r2;
	shfl.sync.bfly.b32 %r3, %r2, 16, 31, -1;
	add.s32 %r2, %r2, %r3;
	shfl.sync.bfly.b32 %r3, %r2, 8, 31, -1;
	add.s32 %r2, %r2, %r3;
	shfl.sync.bfly.b32 %r3, %r2, 4, 31, -1;
	add.s32 %r2, %r2, %r3;
	shfl.sync.bfly.b32 %r3, %r2, 2, 31, -1;
	add.s32 %r2, %r2, %r3;
	shfl.sync.bfly.b32 %r3, %r2, 1, 31, -1;
	add.s32 %r2, %r2, %r3;
	shr.u32 %r4, %r1, 5;
	and.b32 %r5, %r1, 31;
	setp.ne.s32 %p1, %r5, 0;
	mov.u64 %rd5, partials;
	mul.wide.u32 %rd6, %r4, 4;
	add.s64 %rd7, %rd5, %rd6;
	@!%p1 st.shared.b32 [%rd7], %r2;
	bar.sync 0;
	setp.gt.u32 %p2, %r1, 31;
	@%p2 bra $L__done;
	setp.gt.u32 %p1, %r1, 7;
	mov.u32 %r6, 0;
	mul.wide.u32 %rd6, %r1, 4;
	add.s64 %rd7, %rd5, %rd6;
	@!%p1 ld.shared.b32 %r6, [%rd7];
	shfl.sync.down.b32 %r7, %r6, 4, 31, -1;
	add.s32 %r6, %r6, %r7;
	shfl.sync.down.b32 %r7, %r6, 2, 31, -1;
	add.s32 %r6, %r6, %r7;
	shfl.sync.down.b32 %r7, %r6, 1, 31, -1;
	add.s32 %r6, %r6, %r7;
	setp.ne.s32 %p1, %r1, 0;
	mul.wide.u32 %rd6, %r9, 4;
	add.s64 %rd7, %rd2, %rd6;
	@!%p1 st.global.b32 [%rd7], %r6;
$L__done:
	ret;
}
"#;

    fn sum_kernel() -> Kernel {
        parse(SUM).unwrap().kernels.remove(0)
    }

    #[test]
    fn a_block_reduction_with_shuffles_and_a_barrier_sums() {
        let k = sum_kernel();
        let mut m = Memory::default();
        let (input, output) = (m.alloc(1024), m.alloc(8));
        for (i, c) in m.bytes_mut(input).chunks_mut(4).enumerate() {
            c.copy_from_slice(&(i as i32 * 3 - 100).to_le_bytes());
        }
        launch(&mut m, &k, [2, 1, 1], [256, 1, 1], &[input, output]).unwrap();
        let sums: Vec<i32> = m.bytes(output).chunks(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect();
        let expected: i32 = (0..256).map(|i| i * 3 - 100).sum();
        assert_eq!(sums, [expected, expected + 256 * 1000]);
    }

    #[test]
    fn out_of_bounds_accesses_and_bad_launches_are_errors() {
        let k = sum_kernel();
        let mut m = Memory::default();
        let (input, output) = (m.alloc(1020), m.alloc(8));
        let e = launch(&mut m, &k, [1, 1, 1], [256, 1, 1], &[input, output]).unwrap_err();
        assert!(e.contains("thread [255, 0, 0]") && e.contains("outside every Global buffer"), "{e}");
        let e = launch(&mut m, &k, [1, 1, 1], [128, 1, 1], &[input, output]).unwrap_err();
        assert!(e.contains(".reqntid"), "{e}");
        assert!(launch(&mut m, &k, [1, 1, 1], [256, 1, 1], &[input]).unwrap_err().contains("2 parameters"));
    }

    #[test]
    fn threads_waiting_at_different_points_are_a_deadlock() {
        // Thread 0 goes to the barrier while the rest of its warp waits for it at a shuffle.
        let text = SUM
            .replacen("\tshfl.sync", "\tsetp.eq.u32 %p2, %r1, 0;\n\t@%p2 bra $L__bar;\n\tshfl.sync", 1)
            .replace("\tbar.sync 0;", "$L__bar:\n\tbar.sync 0;");
        let k = parse(&text).unwrap().kernels.remove(0);
        let mut m = Memory::default();
        let (input, output) = (m.alloc(1024), m.alloc(8));
        let e = launch(&mut m, &k, [1, 1, 1], [256, 1, 1], &[input, output]).unwrap_err();
        assert!(e.contains("different"), "{e}");
    }

    #[test]
    fn conversions_and_arithmetic_follow_ptx() {
        let f = |x: f32| u64::from(x.to_bits());
        // Saturating float-to-integer conversion, NaN to 0.
        assert_eq!(convert(Ty::S(32), Ty::F32, Round::Zero, true, false, f(3e9)) as u32, i32::MAX as u32);
        assert_eq!(convert(Ty::S(32), Ty::F32, Round::Zero, true, false, f(f32::NAN)), 0);
        assert_eq!(convert(Ty::S(32), Ty::F32, Round::Down, true, false, f(-1.5)) as u32, (-2i32) as u32);
        assert_eq!(convert(Ty::F32, Ty::F32, Round::Down, true, false, f(-1.5)), f(-2.0));
        assert_eq!(convert(Ty::S(64), Ty::S(32), Round::Nearest, false, false, 0xffff_fffe), (-2i64) as u64);
        assert_eq!(convert(Ty::U(64), Ty::U(32), Round::Nearest, false, false, 0xffff_fffe), 0xffff_fffe);
        let no = Round::Nearest;
        // copysign d, a, b is b with a's sign.
        assert_eq!(arith(Arith::Copysign, Ty::F32, no, false, false, [f(-1.0), f(2.0), 0]).unwrap(), f(-2.0));
        assert_eq!(arith(Arith::MaxNan, Ty::F32, no, false, false, [f(f32::NAN), f(2.0), 0]).unwrap(), f(f32::NAN));
        assert_eq!(arith(Arith::Max, Ty::F32, no, false, false, [f(f32::NAN), f(2.0), 0]).unwrap(), f(2.0));
        // -0 below +0, either way round.
        for (op, want) in [(Arith::Max, 0.0f32), (Arith::MaxNan, 0.0), (Arith::Min, -0.0), (Arith::MinNan, -0.0)] {
            for pair in [[f(-0.0), f(0.0), 0], [f(0.0), f(-0.0), 0]] {
                assert_eq!(arith(op, Ty::F32, no, false, false, pair).unwrap(), f(want), "{op:?}");
            }
        }
        assert_eq!(arith(Arith::Mul(Half::Wide), Ty::U(32), no, false, false, [1 << 31, 4, 0]).unwrap(), 1 << 33);
        assert_eq!(arith(Arith::Shr, Ty::S(32), no, false, false, [0x8000_0000, 4, 0]).unwrap(), 0xf800_0000);
        assert_eq!(arith(Arith::Bfe, Ty::U(32), no, false, false, [0xabcd, 4, 8]).unwrap(), 0xbc);
        // Funnel shifts of b:a = 0x12345678:0x9abcdef0.
        let funnel = |left, clamp, n| {
            arith(Arith::Funnel { left, clamp }, Ty::B(32), no, false, false, [0x9abc_def0, 0x1234_5678, n]).unwrap()
        };
        assert_eq!(funnel(true, false, 8), 0x3456_789a);
        assert_eq!(funnel(false, false, 8), 0x789a_bcde);
        assert_eq!(funnel(true, false, 40), 0x3456_789a);
        assert_eq!(funnel(true, true, 40), 0x9abc_def0);
        // Byte permutes of b:a = 0x12345678:0x9abcdef0: bytes 4, 0, 7 and the sign of byte 2.
        let permute = arith(Arith::Permute, Ty::B(32), no, false, false, [0x9abc_def0, 0x1234_5678, 0xa704]);
        assert_eq!(permute.unwrap(), 0xff12_f078);
        // 128-bit subtraction in two words: (2^64 + 1) - 2 = 2^64 - 1.
        let k = parse(&SUM.replace(
            "mov.u32 %r9, %ctaid.x;",
            "mov.u32 %r9, %ctaid.x;\n\tmov.b64 {%r10, %r11}, %rd1;\n\tmov.b64 %rd6, {%r11, %r10};",
        ))
        .unwrap()
        .kernels
        .remove(0);
        let mut m = Memory::default();
        let (input, output) = (m.alloc(1024), m.alloc(8));
        launch(&mut m, &k, [1, 1, 1], [256, 1, 1], &[input, output]).unwrap();
        let (lo, borrow) = add_with_carry(true, 64, 1, 2, false);
        assert_eq!((lo, borrow), (u64::MAX, true));
        assert_eq!(add_with_carry(true, 64, 1, 0, borrow), (0, false));
        assert_eq!(add_with_carry(false, 32, 0xffff_ffff, 1, true), (1, true));
        assert!(compare(Cmp::Unordered(UCmp::Lt), Ty::F32, f(f32::NAN), f(1.0)));
        assert!(!compare(Cmp::Ne, Ty::F32, f(f32::NAN), f(1.0)));
        assert!(compare(Cmp::Lt, Ty::S(64), u64::MAX, 0) && !compare(Cmp::Lt, Ty::U(64), u64::MAX, 0));
    }
}
