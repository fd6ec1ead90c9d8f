//! A reader for the PTX that kiln emits (LLVM's NVPTX back end): kernels (`.entry`) with their
//! parameters, registers, shared and local arrays, and instructions decoded for
//! [`super::emulator`]. Anything outside the subset the emulator executes (device functions,
//! initialized globals, textures, an instruction it does not know) is refused with the PTX line,
//! never skipped.

use std::collections::BTreeMap;

/// A value type of an instruction (`.s32`, `.f64`, `.pred`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// Signed integer of this many bits.
    S(u32),
    /// Unsigned integer.
    U(u32),
    /// Untyped bits.
    B(u32),
    /// IEEE binary16 and bfloat16 (conversions, comparisons and selects on them: kiln
    /// computes in f32).
    F16,
    BF16,
    F32,
    F64,
    Pred,
}

impl Ty {
    fn parse(s: &str) -> Option<Ty> {
        let bits = |t: &str| t.parse::<u32>().ok().filter(|b| [8, 16, 32, 64].contains(b));
        Some(match s {
            "f16" => Ty::F16,
            "bf16" => Ty::BF16,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            "pred" => Ty::Pred,
            _ if s.starts_with('s') => Ty::S(bits(&s[1..])?),
            _ if s.starts_with('u') => Ty::U(bits(&s[1..])?),
            _ if s.starts_with('b') => Ty::B(bits(&s[1..])?),
            _ => return None,
        })
    }

    /// Width in bits (a predicate counts as 1).
    pub fn bits(self) -> u32 {
        match self {
            Ty::S(b) | Ty::U(b) | Ty::B(b) => b,
            Ty::F16 | Ty::BF16 => 16,
            Ty::F32 => 32,
            Ty::F64 => 64,
            Ty::Pred => 1,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Ty::F16 | Ty::BF16 | Ty::F32 | Ty::F64)
    }
}

/// A state space of a load or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    Global,
    Shared,
    Local,
    Param,
    /// Generic addressing: the address says which space.
    Generic,
}

/// A comparison of `setp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// The unordered float forms (`equ`, ...): true when either side is NaN.
    Unordered(UCmp),
    /// Neither side is NaN.
    Num,
    /// Either side is NaN.
    Nan,
}

/// The base comparison of an unordered float comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UCmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A boolean operator (`setp`'s combining form, `and.pred`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoolOp {
    And,
    Or,
    Xor,
}

/// Rounding of `cvt` and of float arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    /// To nearest even (the default, `.rn`, `.rni`).
    Nearest,
    /// Toward zero (`.rz`, `.rzi`).
    Zero,
    /// Toward minus infinity (`.rm`, `.rmi`).
    Down,
    /// Toward plus infinity (`.rp`, `.rpi`).
    Up,
}

/// The lane selection of `shfl.sync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shuffle {
    Up,
    Down,
    Butterfly,
    Index,
}

/// Which half of a product `mul` and `mad` keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    Lo,
    Hi,
    /// The full product, twice as wide as the operands.
    Wide,
}

/// An arithmetic or logic operation; `ty` on [`Kind::Arith`] says how operands are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul(Half),
    Mad(Half),
    Fma,
    Div,
    Rem,
    Min,
    Max,
    /// `min.NaN` / `max.NaN`: NaN if either operand is.
    MinNan,
    MaxNan,
    Abs,
    Neg,
    Not,
    Logic(BoolOp),
    Shl,
    Shr,
    /// `copysign d, a, b`: b with the sign of a.
    Copysign,
    /// Bit-field extract `bfe d, a, start, len`.
    Bfe,
    /// Funnel shifts `shf.l`/`shf.r d, a, b, n` of the 64 bits b:a (`clamp`: n at most 32;
    /// otherwise `wrap`: n mod 32), keeping the high (left) or low (right) 32 bits.
    Funnel {
        left: bool,
        clamp: bool,
    },
    /// Byte permute `prmt.b32 d, a, b, c` (default mode): byte i of d is byte `c[4i..4i+3] & 7`
    /// of b:a, or that byte's sign copied when bit 3 of the selector is set.
    Permute,
    Rcp,
    Sqrt,
    Rsqrt,
    Ex2,
    Lg2,
    Sin,
    Cos,
    Tanh,
}

/// What an instruction does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Arith {
        op: Arith,
        ty: Ty,
        round: Round,
        ftz: bool,
        sat: bool,
    },
    Setp {
        cmp: Cmp,
        ty: Ty,
        combine: Option<BoolOp>,
    },
    Selp(Ty),
    Mov(Ty),
    Cvt {
        to: Ty,
        from: Ty,
        round: Round,
        integral: bool,
        sat: bool,
    },
    /// `cvta`: addresses are already generic here, so a copy.
    Cvta,
    Ld {
        space: Space,
        ty: Ty,
    },
    St {
        space: Space,
        ty: Ty,
    },
    /// Extended-precision `add.cc`, `addc[.cc]`, `sub.cc`, `subc[.cc]`: with the carry (or
    /// borrow) flag as input (`carry_in`) and output (`carry_out`).
    Carry {
        subtract: bool,
        carry_in: bool,
        carry_out: bool,
        ty: Ty,
    },
    Bra,
    Ret,
    Bar,
    Shfl(Shuffle),
}

/// A special register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    Tid(usize),
    Ntid(usize),
    Ctaid(usize),
    Nctaid(usize),
    Laneid,
    WarpSize,
}

/// An operand, resolved at load time.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    Reg(u32),
    /// An immediate, as the bits of its type (floats from `0f`/`0d` hex, integers two's complement).
    Imm(u64),
    Special(Special),
    /// `[base+offset]`.
    Addr {
        base: Base,
        offset: i64,
    },
    /// An instruction index (branch target).
    Label(usize),
    /// The address of a shared or local array.
    Symbol(Base),
    /// `{%r1, %r2, ...}` of a vector load or store.
    Vector(Vec<u32>),
    /// `%r|%p`: the destination of `shfl` and its predicate, or of `setp` and its complement.
    Pair(u32, u32),
}

/// What an address is relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    Reg(u32),
    /// The kernel's parameter block, at this byte offset.
    Param(u64),
    /// The block's shared memory, at this byte offset.
    Shared(u64),
    /// The thread's local memory, at this byte offset.
    Local(u64),
    /// An absolute address.
    Absolute(u64),
}

/// One decoded instruction.
#[derive(Clone, Debug, PartialEq)]
pub struct Inst {
    /// `@%p` (true) or `@!%p` (false): the instruction runs only when the predicate register
    /// has that value.
    pub guard: Option<(u32, bool)>,
    pub kind: Kind,
    pub operands: Vec<Operand>,
    /// The 1-based line of the PTX text, for errors.
    pub line: usize,
}

/// A kernel parameter: its byte offset and size in the parameter block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// A kernel (`.entry`) ready to run.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub name: String,
    pub params: Vec<Param>,
    /// Bytes of the parameter block.
    pub param_bytes: u64,
    /// Number of registers (predicates included), each held as 64 bits.
    pub registers: usize,
    /// Register names, by number, for errors.
    pub register_names: Vec<String>,
    pub code: Vec<Inst>,
    /// Shared bytes per block (module-scope and kernel-scope arrays).
    pub shared_bytes: u64,
    /// Local bytes per thread.
    pub local_bytes: u64,
    /// `.maxntid` (the most threads per block, per dimension) and `.reqntid` (exactly these).
    pub max_threads: Option<[u32; 3]>,
    pub required_threads: Option<[u32; 3]>,
    /// Whether any instruction synchronizes threads (`bar.sync`, `shfl.sync`).
    pub synchronizes: bool,
}

/// A PTX module: its kernels.
#[derive(Clone, Debug)]
pub struct Module {
    pub kernels: Vec<Kernel>,
}

impl Module {
    pub fn kernel(&self, name: &str) -> Option<&Kernel> {
        self.kernels.iter().find(|k| k.name == name)
    }
}

/// A token with its line.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// An identifier, directive, register, label or number.
    Word(String),
    Punct(char),
    Str(String),
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, String> {
    let mut out = vec![];
    let (bytes, mut i, mut line) = (text.as_bytes(), 0, 1);
    let word = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'$' | b'%');
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if text[i..].starts_with("//") {
            i = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
        } else if text[i..].starts_with("/*") {
            let end = text[i..].find("*/").ok_or(format!("line {line}: unterminated comment"))?;
            line += text[i..i + end].matches('\n').count();
            i += end + 2;
        } else if c == b'"' {
            let end = text[i + 1..].find('"').ok_or(format!("line {line}: unterminated string"))?;
            out.push((Tok::Str(text[i + 1..i + 1 + end].to_string()), line));
            i += end + 2;
        } else if word(c) {
            let start = i;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            out.push((Tok::Word(text[start..i].to_string()), line));
        } else {
            out.push((Tok::Punct(c as char), line));
            i += 1;
        }
    }
    Ok(out)
}

/// A cursor over the tokens.
struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|t| &t.0)
    }

    fn line(&self) -> usize {
        self.toks.get(self.at).or(self.toks.last()).map_or(0, |t| t.1)
    }

    fn fail<T>(&self, what: impl std::fmt::Display) -> Result<T, String> {
        Err(format!("PTX line {}: {what}", self.line()))
    }

    fn next(&mut self) -> Result<Tok, String> {
        let t = self.toks.get(self.at).map(|t| t.0.clone());
        self.at += 1;
        t.ok_or_else(|| "PTX ends early".to_string())
    }

    fn word(&mut self) -> Result<String, String> {
        match self.next()? {
            Tok::Word(w) => Ok(w),
            t => {
                self.at -= 1;
                self.fail(format!("expected a name or number, found {t:?}"))
            }
        }
    }

    fn eat(&mut self, c: char) -> bool {
        let yes = self.peek() == Some(&Tok::Punct(c));
        if yes {
            self.at += 1;
        }
        yes
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            self.fail(format!("expected `{c}`, found {:?}", self.peek()))
        }
    }

    fn number(&mut self) -> Result<u64, String> {
        let w = self.word()?;
        integer(&w).ok_or_else(|| format!("PTX line {}: expected a number, found `{w}`", self.line()))
    }

    /// `.align N`, if present.
    fn align(&mut self) -> Result<u64, String> {
        if self.peek() == Some(&Tok::Word(".align".into())) {
            self.at += 1;
            self.number()
        } else {
            Ok(1)
        }
    }

    /// Skips to just after the next `;`.
    fn skip_statement(&mut self) -> Result<(), String> {
        while self.next()? != Tok::Punct(';') {}
        Ok(())
    }
}

/// A decimal or hexadecimal integer literal (`0x..`, an optional `U` suffix).
fn integer(w: &str) -> Option<u64> {
    let w = w.trim_end_matches('U');
    match w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => w.parse().ok(),
    }
}

/// A literal as bits: `0fXXXXXXXX` (f32), `0dXXXXXXXXXXXXXXXX` (f64) or an integer.
fn literal(w: &str) -> Option<u64> {
    if let Some(h) = w.strip_prefix("0f").or_else(|| w.strip_prefix("0F")).filter(|h| h.len() == 8) {
        return u32::from_str_radix(h, 16).ok().map(u64::from);
    }
    if let Some(h) = w.strip_prefix("0d").or_else(|| w.strip_prefix("0D")).filter(|h| h.len() == 16) {
        return u64::from_str_radix(h, 16).ok();
    }
    integer(w)
}

/// Arrays declared with `.shared` or `.local`: name to byte offset.
#[derive(Default)]
struct Arrays {
    offsets: BTreeMap<String, u64>,
    bytes: u64,
}

impl Arrays {
    /// Parses `[.align N] .TYPE name[SIZE];` (after `.shared`/`.local`) and places the array.
    fn declare(&mut self, p: &mut Parser) -> Result<(), String> {
        let align = p.align()?.max(1);
        let ty = p.word()?;
        let elem = Ty::parse(ty.trim_start_matches('.')).ok_or(format!("PTX line {}: type `{ty}`", p.line()))?;
        let name = p.word()?;
        let mut count = 1;
        while p.eat('[') {
            count *= p.number()?;
            p.expect(']')?;
        }
        if p.eat('=') {
            return p.fail(format!("initialized array `{name}` (not supported by the emulator)"));
        }
        p.expect(';')?;
        let offset = self.bytes.div_ceil(align) * align;
        self.bytes = offset + count * u64::from(elem.bits().max(8) / 8);
        self.offsets.insert(name, offset);
        Ok(())
    }
}

/// Parses the PTX text of one module.
pub fn parse(text: &str) -> Result<Module, String> {
    let mut p = Parser { toks: lex(text)?, at: 0 };
    let mut shared = Arrays::default();
    let mut kernels = vec![];
    while let Some(t) = p.peek().cloned() {
        let Tok::Word(w) = t else { return p.fail(format!("unexpected {t:?}")) };
        p.at += 1;
        match w.as_str() {
            ".version" | ".address_size" => {
                p.word()?;
            }
            ".target" => {
                p.word()?;
                while p.eat(',') {
                    p.word()?;
                }
            }
            ".visible" | ".weak" => {}
            ".shared" => shared.declare(&mut p)?,
            ".entry" => kernels.push(entry(&mut p, &shared)?),
            _ => return p.fail(format!("`{w}` (not supported by the emulator)")),
        }
    }
    Ok(Module { kernels })
}

/// Parses `.entry NAME(params) [performance directives] { body }`.
fn entry(p: &mut Parser, module_shared: &Arrays) -> Result<Kernel, String> {
    let name = p.word()?;
    let mut params = vec![];
    let mut param_bytes: u64 = 0;
    p.expect('(')?;
    while !p.eat(')') {
        if p.word()? != ".param" {
            return p.fail("expected `.param`");
        }
        let mut size = 0;
        let pname = loop {
            let w = p.word()?;
            match w.as_str() {
                ".ptr" | ".global" => {}
                // On a pointer, `.align` describes the pointee; a parameter aligns to its size.
                ".align" => {
                    p.number()?;
                }
                _ if w.starts_with('.') => {
                    size = u64::from(Ty::parse(&w[1..]).ok_or(format!("parameter type `{w}`"))?.bits() / 8)
                }
                _ => break w,
            }
        };
        if p.eat('[') {
            return p.fail("array parameters are not supported by the emulator");
        }
        let offset = param_bytes.div_ceil(size.max(1)) * size.max(1);
        param_bytes = offset + size;
        params.push(Param { name: pname, offset, size });
        p.eat(',');
    }
    let dims = |p: &mut Parser| -> Result<[u32; 3], String> {
        let mut d = [1u32; 3];
        for (i, x) in d.iter_mut().enumerate() {
            if i > 0 && !p.eat(',') {
                break;
            }
            *x = u32::try_from(p.number()?).map_err(|e| e.to_string())?;
        }
        Ok(d)
    };
    let (mut max_threads, mut required_threads) = (None, None);
    while !p.eat('{') {
        match p.word()?.as_str() {
            ".maxntid" => max_threads = Some(dims(p)?),
            ".reqntid" => required_threads = Some(dims(p)?),
            ".minnctapersm" | ".maxnreg" | ".maxclusterrank" => {
                p.number()?;
            }
            w => return p.fail(format!("`{w}` before the kernel body")),
        }
    }
    let mut body = Body {
        registers: BTreeMap::new(),
        names: vec![],
        labels: BTreeMap::new(),
        params: params.iter().map(|q| (q.name.clone(), q.offset)).collect(),
        shared: Arrays { offsets: module_shared.offsets.clone(), bytes: module_shared.bytes },
        local: Arrays::default(),
    };
    // `_`, the sink operand (`mov.b64 {%r1, _}, %rd1;`), is a register nothing reads.
    body.add("_".into());
    // Statements, with label operands kept by name until every label is known.
    let mut code: Vec<Statement> = vec![];
    loop {
        let line = p.line();
        match p.next()? {
            Tok::Punct('}') => break,
            Tok::Punct('@') => {
                let negate = p.eat('!');
                let pred = p.word()?;
                let (op, args) = statement(p)?;
                code.push((Some((pred, !negate)), op, args, line));
            }
            Tok::Word(w) if w == ".reg" => body.declare_registers(p)?,
            Tok::Word(w) if w == ".shared" => body.shared.declare(p)?,
            Tok::Word(w) if w == ".local" => body.local.declare(p)?,
            Tok::Word(w) if w == ".pragma" => p.skip_statement()?,
            Tok::Word(w) if p.peek() == Some(&Tok::Punct(':')) => {
                p.at += 1;
                body.labels.insert(w, code.len());
            }
            Tok::Word(_) => {
                p.at -= 1;
                let (op, args) = statement(p)?;
                code.push((None, op, args, line));
            }
            t => return p.fail(format!("unexpected {t:?} in the body of `{name}`")),
        }
    }
    let code = code
        .into_iter()
        .map(|(guard, op, args, line)| {
            let at = |e: String| format!("PTX line {line}: {e}");
            let guard = match guard {
                Some((r, value)) => Some((body.register(&r).map_err(at)?, value)),
                None => None,
            };
            let kind = decode(&op).ok_or_else(|| at(format!("instruction `{op}` (not supported by the emulator)")))?;
            let operands = args.into_iter().map(|a| body.resolve(a)).collect::<Result<Vec<_>, _>>().map_err(at)?;
            check_arity(kind, &operands).map_err(|e| at(format!("`{op}`: {e}")))?;
            Ok(Inst { guard, kind, operands, line })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let synchronizes = code.iter().any(|i| matches!(i.kind, Kind::Bar | Kind::Shfl(_)));
    Ok(Kernel {
        name,
        params,
        param_bytes,
        registers: body.names.len(),
        register_names: body.names,
        code,
        shared_bytes: body.shared.bytes,
        local_bytes: body.local.bytes,
        max_threads,
        required_threads,
        synchronizes,
    })
}

/// An instruction before names are resolved: its guard (predicate name, expected value),
/// opcode, operands and line.
type Statement = (Option<(String, bool)>, String, Vec<Raw>, usize);

/// An operand before names are resolved.
#[derive(Clone, Debug)]
enum Raw {
    Word(String),
    Negative(String),
    Addr(String, i64),
    Vector(Vec<String>),
    Pair(String, String),
}

/// Parses `opcode operand, ...;` (the guard already read).
fn statement(p: &mut Parser) -> Result<(String, Vec<Raw>), String> {
    let op = p.word()?;
    let mut args = vec![];
    if p.eat(';') {
        return Ok((op, args));
    }
    loop {
        let arg = if p.eat('[') {
            let base = p.word()?;
            let offset = if p.eat('+') {
                let neg = p.eat('-');
                let n = p.number()? as i64;
                if neg {
                    -n
                } else {
                    n
                }
            } else if p.eat('-') {
                -(p.number()? as i64)
            } else {
                0
            };
            p.expect(']')?;
            Raw::Addr(base, offset)
        } else if p.eat('{') {
            let mut regs = vec![p.word()?];
            while p.eat(',') {
                regs.push(p.word()?);
            }
            p.expect('}')?;
            Raw::Vector(regs)
        } else if p.eat('-') {
            Raw::Negative(p.word()?)
        } else {
            let w = p.word()?;
            if p.eat('|') {
                Raw::Pair(w, p.word()?)
            } else {
                Raw::Word(w)
            }
        };
        args.push(arg);
        if p.eat(';') {
            return Ok((op, args));
        }
        p.expect(',')?;
    }
}

/// Names known inside one kernel body.
struct Body {
    registers: BTreeMap<String, u32>,
    names: Vec<String>,
    labels: BTreeMap<String, usize>,
    params: BTreeMap<String, u64>,
    shared: Arrays,
    local: Arrays,
}

impl Body {
    /// `.reg .TYPE %name<N>;` or `.reg .TYPE %a, %b;`.
    fn declare_registers(&mut self, p: &mut Parser) -> Result<(), String> {
        p.word()?; // the type: every register is held as 64 bits
        loop {
            let name = p.word()?;
            if p.eat('<') {
                let n = p.number()?;
                p.expect('>')?;
                for i in 0..n {
                    self.add(format!("{name}{i}"));
                }
            } else {
                self.add(name);
            }
            if p.eat(';') {
                return Ok(());
            }
            p.expect(',')?;
        }
    }

    fn add(&mut self, name: String) {
        let n = self.names.len() as u32;
        self.registers.entry(name.clone()).or_insert_with(|| {
            self.names.push(name);
            n
        });
    }

    fn register(&self, name: &str) -> Result<u32, String> {
        self.registers.get(name).copied().ok_or(format!("undeclared register `{name}`"))
    }

    /// What an address base or a symbol operand names.
    fn base(&self, name: &str) -> Result<Base, String> {
        if name.starts_with('%') {
            return self.register(name).map(Base::Reg);
        }
        if let Some(&o) = self.params.get(name) {
            return Ok(Base::Param(o));
        }
        if let Some(&o) = self.shared.offsets.get(name) {
            return Ok(Base::Shared(o));
        }
        if let Some(&o) = self.local.offsets.get(name) {
            return Ok(Base::Local(o));
        }
        literal(name).map(Base::Absolute).ok_or(format!("unknown name `{name}`"))
    }

    fn resolve(&self, raw: Raw) -> Result<Operand, String> {
        Ok(match raw {
            Raw::Word(w) => {
                if let Some(s) = special(&w) {
                    Operand::Special(s)
                } else if w.starts_with('%') || w == "_" {
                    Operand::Reg(self.register(&w)?)
                } else if let Some(&target) = self.labels.get(&w) {
                    Operand::Label(target)
                } else if let Some(v) = literal(&w) {
                    Operand::Imm(v)
                } else {
                    Operand::Symbol(self.base(&w)?)
                }
            }
            Raw::Negative(w) => {
                let v = literal(&w).ok_or(format!("expected a number after `-`, found `{w}`"))?;
                Operand::Imm((v as i64).wrapping_neg() as u64)
            }
            Raw::Addr(base, offset) => Operand::Addr { base: self.base(&base)?, offset },
            Raw::Vector(regs) => Operand::Vector(regs.iter().map(|r| self.register(r)).collect::<Result<_, _>>()?),
            Raw::Pair(a, b) => Operand::Pair(self.register(&a)?, self.register(&b)?),
        })
    }
}

fn special(w: &str) -> Option<Special> {
    let axis = |s: &str| match s {
        "x" => Some(0),
        "y" => Some(1),
        "z" => Some(2),
        _ => None,
    };
    let (reg, dim) = w.split_once('.').unwrap_or((w, ""));
    Some(match reg {
        "%tid" => Special::Tid(axis(dim)?),
        "%ntid" => Special::Ntid(axis(dim)?),
        "%ctaid" => Special::Ctaid(axis(dim)?),
        "%nctaid" => Special::Nctaid(axis(dim)?),
        "%laneid" => Special::Laneid,
        "WARP_SZ" => Special::WarpSize,
        _ => return None,
    })
}

/// The value of the first modifier in `table` that `mods` has.
fn first<T: Copy>(mods: &[&str], table: &[(&str, T)]) -> Option<T> {
    table.iter().find(|(m, _)| mods.contains(m)).map(|&(_, v)| v)
}

/// Decodes an opcode with its modifiers (`add.rn.f32`, `setp.lt.and.s64`, `ld.global.v4.b32`).
fn decode(op: &str) -> Option<Kind> {
    let mut parts = op.split('.');
    let base = parts.next()?;
    let mods: Vec<&str> = parts.collect();
    match base {
        "bra" => return Some(Kind::Bra),
        "ret" | "exit" => return Some(Kind::Ret),
        "bar" | "barrier" => return Some(Kind::Bar),
        "cvta" => return Some(Kind::Cvta),
        _ => {}
    }
    let types: Vec<Ty> = mods.iter().filter_map(|m| Ty::parse(m)).collect();
    let has = |m: &str| mods.contains(&m);
    let round = first(
        &mods,
        &[
            ("rz", Round::Zero),
            ("rzi", Round::Zero),
            ("rm", Round::Down),
            ("rmi", Round::Down),
            ("rp", Round::Up),
            ("rpi", Round::Up),
        ],
    )
    .unwrap_or(Round::Nearest);
    let ty = *types.last()?;
    let space = || {
        first(
            &mods,
            &[("global", Space::Global), ("shared", Space::Shared), ("local", Space::Local), ("param", Space::Param)],
        )
        .unwrap_or(Space::Generic)
    };
    let half = || first(&mods, &[("hi", Half::Hi), ("wide", Half::Wide)]).unwrap_or(Half::Lo);
    let arith = |op: Arith| Some(Kind::Arith { op, ty, round, ftz: has("ftz"), sat: has("sat") });
    let carry = |subtract: bool, carry_in: bool| Some(Kind::Carry { subtract, carry_in, carry_out: has("cc"), ty });
    match base {
        "add" | "sub" if has("cc") => carry(base == "sub", false),
        "addc" | "subc" => carry(base == "subc", true),
        "add" => arith(Arith::Add),
        "sub" => arith(Arith::Sub),
        "mul" => arith(Arith::Mul(half())),
        "mad" if ty.is_float() => arith(Arith::Fma),
        "mad" => arith(Arith::Mad(half())),
        "fma" => arith(Arith::Fma),
        "div" => arith(Arith::Div),
        "rem" => arith(Arith::Rem),
        "min" if has("NaN") => arith(Arith::MinNan),
        "max" if has("NaN") => arith(Arith::MaxNan),
        "min" => arith(Arith::Min),
        "max" => arith(Arith::Max),
        "abs" => arith(Arith::Abs),
        "neg" => arith(Arith::Neg),
        "not" => arith(Arith::Not),
        "and" => arith(Arith::Logic(BoolOp::And)),
        "or" => arith(Arith::Logic(BoolOp::Or)),
        "xor" => arith(Arith::Logic(BoolOp::Xor)),
        "shl" => arith(Arith::Shl),
        "shr" => arith(Arith::Shr),
        "copysign" => arith(Arith::Copysign),
        "bfe" => arith(Arith::Bfe),
        "shf" => arith(Arith::Funnel { left: has("l"), clamp: has("clamp") }),
        "prmt" if mods == ["b32"] => arith(Arith::Permute),
        "rcp" => arith(Arith::Rcp),
        "sqrt" => arith(Arith::Sqrt),
        "rsqrt" => arith(Arith::Rsqrt),
        "ex2" => arith(Arith::Ex2),
        "lg2" => arith(Arith::Lg2),
        "sin" => arith(Arith::Sin),
        "cos" => arith(Arith::Cos),
        "tanh" => arith(Arith::Tanh),
        "setp" => {
            let cmp = mods.iter().find_map(|m| comparison(m))?;
            let combine = first(&mods, &[("and", BoolOp::And), ("or", BoolOp::Or), ("xor", BoolOp::Xor)]);
            Some(Kind::Setp { cmp, ty, combine })
        }
        "selp" => Some(Kind::Selp(ty)),
        "mov" => Some(Kind::Mov(ty)),
        "cvt" if types.len() == 2 => Some(Kind::Cvt {
            to: types[0],
            from: types[1],
            round,
            integral: mods.iter().any(|m| m.len() == 3 && m.starts_with('r') && m.ends_with('i')),
            sat: has("sat"),
        }),
        "ld" | "ldu" => Some(Kind::Ld { space: space(), ty }),
        "st" => Some(Kind::St { space: space(), ty }),
        "shfl" if has("sync") => Some(Kind::Shfl(first(
            &mods,
            &[("up", Shuffle::Up), ("down", Shuffle::Down), ("bfly", Shuffle::Butterfly), ("idx", Shuffle::Index)],
        )?)),
        _ => None,
    }
}

fn comparison(m: &str) -> Option<Cmp> {
    let ordered = |s: &str| match s {
        "eq" => Some(UCmp::Eq),
        "ne" => Some(UCmp::Ne),
        "lt" | "lo" => Some(UCmp::Lt),
        "le" | "ls" => Some(UCmp::Le),
        "gt" | "hi" => Some(UCmp::Gt),
        "ge" | "hs" => Some(UCmp::Ge),
        _ => None,
    };
    Some(match m {
        "num" => Cmp::Num,
        "nan" => Cmp::Nan,
        "equ" | "neu" | "ltu" | "leu" | "gtu" | "geu" => Cmp::Unordered(ordered(&m[..2])?),
        _ => match ordered(m)? {
            UCmp::Eq => Cmp::Eq,
            UCmp::Ne => Cmp::Ne,
            UCmp::Lt => Cmp::Lt,
            UCmp::Le => Cmp::Le,
            UCmp::Gt => Cmp::Gt,
            UCmp::Ge => Cmp::Ge,
        },
    })
}

/// Checks the operand count and the places that must be registers or addresses, so that the
/// emulator's loop can index operands without checking.
fn check_arity(kind: Kind, ops: &[Operand]) -> Result<(), String> {
    let n = ops.len();
    let count = match kind {
        Kind::Arith { op, .. } => match op {
            Arith::Abs
            | Arith::Neg
            | Arith::Not
            | Arith::Rcp
            | Arith::Sqrt
            | Arith::Rsqrt
            | Arith::Ex2
            | Arith::Lg2
            | Arith::Sin
            | Arith::Cos
            | Arith::Tanh => 2,
            Arith::Mad(_) | Arith::Fma | Arith::Bfe | Arith::Funnel { .. } | Arith::Permute => 4,
            _ => 3,
        },
        Kind::Setp { combine, .. } => 3 + usize::from(combine.is_some()),
        Kind::Carry { .. } => 3,
        Kind::Selp(_) => 4,
        Kind::Mov(_) | Kind::Cvt { .. } | Kind::Cvta | Kind::Ld { .. } | Kind::St { .. } => 2,
        Kind::Bra => 1,
        Kind::Ret => 0,
        Kind::Bar => n.min(2),
        Kind::Shfl(_) => 5,
    };
    if n != count {
        return Err(format!("{n} operands, expected {count}"));
    }
    if ops.iter().any(|o| matches!(o, Operand::Vector(v) if v.len() > 4)) {
        return Err("a vector of more than 4 registers".into());
    }
    let register = |o: &Operand| matches!(o, Operand::Reg(_) | Operand::Pair(..) | Operand::Vector(_));
    let ok = match kind {
        Kind::Bra => matches!(ops[0], Operand::Label(_)),
        Kind::Ret | Kind::Bar => true,
        Kind::Ld { .. } => register(&ops[0]) && matches!(ops[1], Operand::Addr { .. }),
        Kind::St { .. } => matches!(ops[0], Operand::Addr { .. }),
        _ => register(&ops[0]),
    };
    if ok {
        Ok(())
    } else {
        Err("operands of the wrong form".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
.version 8.0
.target sm_80
.address_size 64
.shared .align 16 .b8 partials[32];
.visible .entry k(
	.param .u64 k_param_0,
	.param .u64 .ptr .align 1 k_param_1
)
.maxntid 256, 1, 1
{
	.reg .pred 	%p<2>;
	.reg .b32 	%r<3>;
	.reg .b64 	%rd<4>;
	ld.param.b64 	%rd1, [k_param_1];
	mov.u32 	%r1, %tid.x;
	setp.gt.u32 	%p1, %r1, 5;
	@%p1 bra 	$L__BB0_2;
	mov.u64 	%rd2, partials;
	st.shared.v2.b32 	[%rd2+8], {%r1, %r1};
	shfl.sync.bfly.b32 	%r2|%p1, %r1, 16, 31, -1;
	bar.sync 	0;
$L__BB0_2:
	ret;
}
"#;

    #[test]
    fn reads_a_kernel() {
        let m = parse(SAMPLE).unwrap();
        let k = m.kernel("k").unwrap();
        assert_eq!(k.params.iter().map(|p| (p.offset, p.size)).collect::<Vec<_>>(), [(0, 8), (8, 8)]);
        // Its registers, and `_`.
        assert_eq!((k.registers, k.shared_bytes, k.max_threads), (1 + 2 + 3 + 4, 32, Some([256, 1, 1])));
        assert_eq!(k.code.len(), 9);
        assert_eq!(k.code[3].operands, [Operand::Label(8)]);
        let p1 = k.register_names.iter().position(|n| n == "%p1").unwrap() as u32;
        assert_eq!(k.code[3].guard, Some((p1, true)));
        assert_eq!(k.code[4].operands[1], Operand::Symbol(Base::Shared(0)));
        assert_eq!(k.code[6].operands[4], Operand::Imm(u64::MAX));
        assert!(k.synchronizes);
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let unknown = SAMPLE.replace("bar.sync \t0;", "vote.sync.all.pred %p1, %p1, -1;");
        assert!(parse(&unknown).unwrap_err().contains("vote.sync.all.pred"), "{}", parse(&unknown).unwrap_err());
        let function = SAMPLE.replace(".visible .entry k(", ".func k(");
        assert!(parse(&function).unwrap_err().contains(".func"));
        let undeclared = SAMPLE.replace("%r1, %tid.x", "%r9, %tid.x");
        assert!(parse(&undeclared).unwrap_err().contains("undeclared register `%r9`"));
    }
}
