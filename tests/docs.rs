//! The docs are tests. Every command of the README's tour and of `docs/auditor-guide.md` runs
//! as a reader would type it, against a system this test starts the way the docs say
//! (`govern up` in a fresh working dir), and every output line the docs show must appear as
//! shown. A doc that drifts from the output fails here, naming the doc, the line, the command,
//! the expected line and the actual output.
//!
//! How a doc is read:
//! - the README's "A short tour": every line of a ```sh block is a command that must succeed;
//!   `make up` is the node this test started, `cargo run [-q] --release --` is `govern`;
//! - a ```console block (the README's tour, and every one of the guide): a `$ ` line is a
//!   command (a trailing `\` continues it), and the lines up to the next command are its whole
//!   output, stdout and stderr as a terminal shows them; `…` alone on a line stands for any
//!   lines, and within a line for any text. A command must fail exactly when its output shows
//!   an `error:` line.
//!
//! Each doc runs in one bash, command after command, so `cd` and variables carry over; `HOME`
//! is a fresh directory (the guide's `~/govern` is a link to this clone, its node runs in
//! `~/govern-audit`), `govern` is this build, and the ports the doc names (`localhost:7600` for
//! the node, `8000`… for static servers) are free ones. Before each command the test waits
//! until the node serves a witnessed checkpoint of its latest size, as a reader's pause does.
//!
//! Placeholders ([`tokens`]): what the doc shows that differs run to run matches any value of
//! its shape: hashes, keys, signatures, ids and event times, and one value the doc shows stands
//! for one actual value throughout the doc (the root the guide shows twice is one root), which
//! later commands use in its place. Rates, durations, byte and checkpoint counts, the
//! witnesses' times and which two of the three witnesses made a quorum match any value.
//!
//! `GOVERN_DOCS_TRANSCRIPT=DIR` writes, for whoever updates a doc, what every command of it
//! printed and what each value it shows stood for (`DIR/README.md.txt`, …).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The node's port in the docs.
const DOC_NODE_PORT: &str = "7600";
/// The longest one command of a doc may take before the test gives up on it.
const COMMAND_PATIENCE: Duration = Duration::from_secs(120);

/// One command of a doc.
#[derive(Debug)]
struct Step {
    /// Its line in the doc (1-based).
    line: usize,
    /// As the doc writes it (continued lines joined with their `\`).
    command: String,
    /// The output the doc shows, each line with its line number; `None` for a ```sh line,
    /// which must only succeed.
    shown: Option<Vec<(usize, String)>>,
}

/// The commands of `text`: of its ```console blocks, and of its ```sh blocks when `sh`; only
/// under the heading `## <section>` when given.
fn steps(text: &str, section: Option<&str>, sh: bool) -> Vec<Step> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<Step> = Vec::new();
    let mut in_section = section.is_none();
    let mut block: Option<&str> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if block.is_none() && line.starts_with("## ") {
            in_section = section.is_none_or(|s| line == format!("## {s}"));
        }
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            block = match block {
                Some(_) => None,
                None => Some(fence.trim()),
            };
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        if !in_section {
            continue;
        }
        let continued = |first: &str, i: &mut usize| {
            let mut command = first.to_string();
            while command.ends_with('\\') && *i < lines.len() {
                command.push('\n');
                command.push_str(lines[*i]);
                *i += 1;
            }
            command
        };
        match block {
            Some("sh") if sh => {
                let t = line.trim();
                if !t.is_empty() && !t.starts_with('#') {
                    let command = continued(t, &mut i);
                    out.push(Step {
                        line: start + 1,
                        command,
                        shown: None,
                    });
                }
            }
            Some("console") => {
                if let Some(c) = line.strip_prefix("$ ") {
                    let command = continued(c, &mut i);
                    out.push(Step {
                        line: start + 1,
                        command,
                        shown: Some(Vec::new()),
                    });
                } else {
                    match out.last_mut().and_then(|s| s.shown.as_mut()) {
                        Some(shown) => shown.push((start + 1, line.to_string())),
                        None => panic!("line {}: console output before any command", start + 1),
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A piece of a line the doc shows.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// Shown as is.
    Lit(String),
    /// `…` within a line: any text.
    Any,
    /// A value that differs run to run: any text matching `class`.
    Var {
        doc: String,
        class: String,
        bind: Bind,
    },
}

/// What a value the doc shows stands for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bind {
    /// Any value, each time (a rate, a count that depends on timing).
    Free,
    /// One actual value wherever the doc shows it (an event's time, an id's first characters).
    Same,
    /// That, and no other value the doc shows stands for it too (a hash, a key, a whole id).
    Unique,
}

fn rx(s: &str) -> Regex {
    Regex::new(s).unwrap()
}

/// Counts and times that depend on timing, each before the words that say what it counts.
static TIMING: LazyLock<Regex> = LazyLock::new(|| {
    rx(r"^(\d+\.\d+)( s\b)|^(\d+)(/s\)| entries/s| checkpoints\b| batches\b| bytes\b)")
});
static LARGEST: LazyLock<Regex> = LazyLock::new(|| rx(r"^(largest of size )(\d+|-)"));
static WITNESS: LazyLock<Regex> = LazyLock::new(|| rx(r"^(govern\.localhost/witness-)(\d+)"));
static TIME_S: LazyLock<Regex> = LazyLock::new(|| rx(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"));
static TIME_MS: LazyLock<Regex> = LazyLock::new(|| rx(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"));
/// A note verifier key's `<hex key ID>+<base64 key>`, after its name and `+`.
static KEY: LazyLock<Regex> = LazyLock::new(|| rx(r"^([0-9a-f]{8})\+([A-Za-z0-9+/]{44})"));
/// A UUID, or the first characters of one.
static UUID: LazyLock<Regex> = LazyLock::new(|| rx(r"^[0-9a-f]{8}(?:-[0-9a-f]{1,12})+"));
static HEX: LazyLock<Regex> = LazyLock::new(|| rx(r"^[0-9a-f]{8,}"));
/// Standard or URL-safe base64 of at least 12 characters.
static B64: LazyLock<Regex> = LazyLock::new(|| rx(r"^[A-Za-z0-9+/_-]{12,}={0,2}"));

fn is_b64(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+/_-=".contains(c)
}

/// A line the doc shows, as literal text and placeholders.
fn tokens(line: &str) -> Vec<Tok> {
    // Which witnesses made the quorum depends on which answered first.
    let witnessed = line.starts_with("witnessed") || line.starts_with("\u{2014} ");
    let mut out: Vec<Tok> = Vec::new();
    let lit = |out: &mut Vec<Tok>, s: &str| match out.last_mut() {
        Some(Tok::Lit(l)) => l.push_str(s),
        _ => out.push(Tok::Lit(s.to_string())),
    };
    let var = |doc: &str, class: String, bind: Bind| Tok::Var {
        doc: doc.to_string(),
        class,
        bind,
    };
    let mut i = 0;
    while i < line.len() {
        let rest = &line[i..];
        let prev = line[..i].chars().next_back();
        let after = |n: usize| rest[n..].chars().next();
        let word_start = prev.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '.');
        // The shape of a value: each hex or base64 character stands for any of its kind.
        let shape = |s: &str, hex: bool| -> String {
            s.chars()
                .map(|c| match c {
                    '-' if hex => "-".to_string(),
                    c if hex && c.is_ascii_hexdigit() => "[0-9a-f]".to_string(),
                    '=' => "=".to_string(),
                    _ => "[A-Za-z0-9+/_-]".to_string(),
                })
                .collect()
        };
        if let Some(r) = rest.strip_prefix('…') {
            out.push(Tok::Any);
            i = line.len() - r.len();
            continue;
        }
        if word_start && let Some(c) = TIMING.captures(rest) {
            let (n, ctx) = match (c.get(1), c.get(2)) {
                (Some(n), Some(ctx)) => (n.as_str(), ctx.as_str()),
                _ => (&c[3], c.get(4).unwrap().as_str()),
            };
            out.push(var(n, r"\d+(?:\.\d+)?".into(), Bind::Free));
            lit(&mut out, ctx);
            i += c.get(0).unwrap().end();
            continue;
        }
        if let Some(c) = LARGEST.captures(rest) {
            lit(&mut out, &c[1]);
            out.push(var(&c[2], r"\d+|-".into(), Bind::Free));
            i += c.get(0).unwrap().end();
            continue;
        }
        if witnessed && let Some(c) = WITNESS.captures(rest) {
            lit(&mut out, &c[1]);
            out.push(var(&c[2], r"\d+".into(), Bind::Free));
            i += c.get(0).unwrap().end();
            continue;
        }
        if word_start && let Some(m) = TIME_MS.find(rest) {
            out.push(var(
                m.as_str(),
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z".into(),
                Bind::Same,
            ));
            i += m.end();
            continue;
        }
        if word_start && let Some(m) = TIME_S.find(rest) {
            out.push(var(
                m.as_str(),
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ".into(),
                Bind::Free,
            ));
            i += m.end();
            continue;
        }
        if prev == Some('+')
            && let Some(c) = KEY.captures(rest)
            && after(c.get(0).unwrap().end()).is_none_or(|c| !is_b64(c))
        {
            out.push(var(&c[1], shape(&c[1], true), Bind::Unique));
            lit(&mut out, "+");
            out.push(var(&c[2], shape(&c[2], false), Bind::Unique));
            i += c.get(0).unwrap().end();
            continue;
        }
        if word_start
            && prev != Some('-')
            && let Some(m) = UUID.find(rest)
            && after(m.end()).is_none_or(|c| !c.is_ascii_alphanumeric() && c != '-')
        {
            // The first characters of two ids may be the same.
            let bind = if m.len() == 36 {
                Bind::Unique
            } else {
                Bind::Same
            };
            out.push(var(m.as_str(), shape(m.as_str(), true), bind));
            i += m.end();
            continue;
        }
        if word_start
            && let Some(m) = HEX.find(rest)
            && after(m.end()).is_none_or(|c| !c.is_ascii_alphanumeric())
            && m.as_str().chars().any(|c| c.is_ascii_digit())
        {
            out.push(var(m.as_str(), shape(m.as_str(), true), Bind::Unique));
            i += m.end();
            continue;
        }
        if prev.is_none_or(|c| c.is_whitespace() || "\"'(,:[=".contains(c))
            && let Some(m) = B64.find(rest)
            && after(m.end()).is_none_or(|c| !is_b64(c))
        {
            let s = m.as_str();
            if s.chars().any(|c| c.is_ascii_digit())
                && s.chars().any(|c| c.is_ascii_uppercase())
                && s.chars().any(|c| c.is_ascii_lowercase())
            {
                out.push(var(s, shape(s, false), Bind::Unique));
                i += m.end();
                continue;
            }
        }
        let c = rest.chars().next().unwrap();
        lit(&mut out, &rest[..c.len_utf8()]);
        i += c.len_utf8();
    }
    out
}

/// What the doc's values stand for: doc value → actual value; a [`Bind::Unique`] one for no
/// other doc value.
#[derive(Debug, Clone, Default)]
struct Bindings {
    actual: BTreeMap<String, String>,
}

impl Bindings {
    fn bind(&mut self, doc: &str, actual: &str, bind: Bind) -> bool {
        match self.actual.get(doc) {
            Some(a) => a == actual,
            None if bind == Bind::Unique && self.actual.values().any(|a| a == actual) => false,
            None => {
                self.actual.insert(doc.to_string(), actual.to_string());
                true
            }
        }
    }

    /// `text` with every bound doc value replaced by its actual one, the longest first.
    fn apply(&self, text: &str) -> String {
        let mut pairs: Vec<(&String, &String)> = self.actual.iter().collect();
        pairs.sort_by_key(|(d, _)| std::cmp::Reverse(d.len()));
        let mut out = text.to_string();
        for (doc, actual) in pairs {
            out = out.replace(doc.as_str(), actual);
        }
        out
    }
}

/// A line the doc shows, or `…` for any lines.
#[derive(Debug)]
enum Shown {
    Any,
    Line {
        at: usize,
        text: String,
        toks: Vec<Tok>,
    },
}

/// Does `actual` match `toks` under `b`? The bindings it adds, if so.
fn match_line(
    toks: &[Tok],
    actual: &str,
    b: &Bindings,
    cache: &mut HashMap<String, Regex>,
) -> Option<Bindings> {
    let mut pattern = String::from("^");
    let mut groups: Vec<(&str, Bind)> = Vec::new();
    for t in toks {
        match t {
            Tok::Lit(s) => pattern.push_str(&regex::escape(s)),
            Tok::Any => pattern.push_str(".*"),
            Tok::Var { class, bind, .. } if *bind == Bind::Free => {
                write!(pattern, "(?:{class})").unwrap();
            }
            Tok::Var { doc, class, bind } => match b.actual.get(doc) {
                Some(a) => pattern.push_str(&regex::escape(a)),
                None => {
                    write!(pattern, "({class})").unwrap();
                    groups.push((doc, *bind));
                }
            },
        }
    }
    pattern.push('$');
    let re = cache
        .entry(pattern.clone())
        .or_insert_with(|| Regex::new(&pattern).unwrap());
    let caps = re.captures(actual)?;
    let mut b = b.clone();
    for (k, (doc, bind)) in groups.iter().enumerate() {
        if !b.bind(doc, &caps[k + 1], *bind) {
            return None;
        }
    }
    Some(b)
}

/// Do the actual lines match what the doc shows, whole? The bindings, if so.
fn match_output(
    shown: &[Shown],
    actual: &[&str],
    b: &Bindings,
    cache: &mut HashMap<String, Regex>,
) -> Option<Bindings> {
    match shown.split_first() {
        None => actual.is_empty().then(|| b.clone()),
        Some((Shown::Any, rest)) => {
            (0..=actual.len()).find_map(|k| match_output(rest, &actual[k..], b, cache))
        }
        Some((Shown::Line { toks, .. }, rest)) => {
            let (first, others) = actual.split_first()?;
            let b = match_line(toks, first, b, cache)?;
            match_output(rest, others, &b, cache)
        }
    }
}

/// The first line the doc shows that the output does not hold where it should; `None` when
/// every one is there and the output goes on after the last.
fn first_mismatch<'a>(
    shown: &'a [Shown],
    actual: &[&str],
    b: &Bindings,
    cache: &mut HashMap<String, Regex>,
) -> Option<&'a Shown> {
    let (mut at, mut b, mut gap) = (0, b.clone(), false);
    for s in shown {
        let Shown::Line { toks, .. } = s else {
            gap = true;
            continue;
        };
        let upto = if gap { actual.len() } else { at + 1 };
        let found = (at..upto.min(actual.len()))
            .find_map(|k| match_line(toks, actual[k], &b, cache).map(|nb| (k, nb)));
        let Some((k, nb)) = found else {
            return Some(s);
        };
        (at, b, gap) = (k + 1, nb, false);
    }
    None
}

/// The environment the docs run in: this build's `govern` first on PATH, `home` as HOME, its
/// `tmp` as TMPDIR, nothing of the caller's govern settings.
fn environment(cmd: &mut Command, home: &Path) {
    let bin = Path::new(support::BIN).parent().unwrap();
    let mut path =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect::<Vec<_>>();
    // python3 as the caller's environment finds it (a version manager's shim needs the
    // caller's HOME, which the docs do not have).
    if let Ok(out) = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        && out.status.success()
    {
        let exe = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        path.insert(0, exe.parent().unwrap().to_path_buf());
    }
    path.insert(0, bin.to_path_buf());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("GOVERN_") || k.starts_with("XDG_") || k == "CDPATH" {
            cmd.env_remove(&*k);
        }
    }
    cmd.env("PATH", std::env::join_paths(path).unwrap())
        .env("GOVERN_TEST_AUX_INFO", support::TEST_AUX_INFO)
        .env("HOME", home)
        .env("TMPDIR", home.join("tmp"))
        .env("LANG", "C.UTF-8")
        .env_remove("LC_ALL");
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `govern up` in `dir`, on a free port; its group, its URL, and its stdout kept open.
async fn up(
    dir: &Path,
    home: &Path,
    extra: &[&str],
) -> (support::Group, String, Lines<BufReader<ChildStdout>>, Child) {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = Command::new(support::BIN);
    environment(&mut cmd, home);
    let mut child = cmd
        .args(["up", "--listen", "127.0.0.1:0"])
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(home.join("up.err")).unwrap())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let group = support::Group(child.id().unwrap());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    // `govern up` starts the node, three witnesses, the policy worker and five signers, each
    // attesting: on two cores beside the other tests' processes that takes a while.
    let started = tokio::time::timeout(support::PATIENCE * 4, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("govern node listening on ") {
                url = rest.split_whitespace().next().map(str::to_owned);
            }
            if line.starts_with("Ctrl-C") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(started, Ok(true)) && url.is_some(),
        "govern up did not start; its stderr:\n{}",
        std::fs::read_to_string(home.join("up.err")).unwrap_or_default()
    );
    (group, url.unwrap(), lines, child)
}

/// Wait until the node serves a witnessed checkpoint of its latest size.
async fn settle(http: &reqwest::Client, url: &str) {
    let until = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        let state: serde_json::Value = http
            .get(format!("{url}/v1/state"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let note = http
            .get(format!("{url}/checkpoint"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let witnessed: Option<u64> = note.lines().nth(1).and_then(|s| s.parse().ok());
        if witnessed.is_some() && witnessed == state["size"].as_u64() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the node's witnessed checkpoint stays at {witnessed:?}, its state at {}",
            state["size"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One bash fed the doc's commands one after another.
struct Shell {
    _group: support::Group,
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    outputs: PathBuf,
    n: usize,
}

impl Shell {
    fn start(cwd: &Path, home: &Path) -> Self {
        let outputs = home.join("outputs");
        std::fs::create_dir_all(&outputs).unwrap();
        let mut cmd = Command::new("bash");
        environment(&mut cmd, home);
        let mut child = cmd
            .args(["--noprofile", "--norc"])
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(home.join("bash.err")).unwrap())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self {
            _group: support::Group(child.id().unwrap()),
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            _child: child,
            outputs,
            n: 0,
        }
    }

    /// Run `command` in the shell: its exit status and its output (stdout and stderr as one).
    async fn run(&mut self, command: &str) -> Result<(i32, String), String> {
        self.n += 1;
        let out = self.outputs.join(self.n.to_string());
        let done = format!("govern-docs-step-{} done", self.n);
        let script = format!(
            "{{\n{command}\n}} >'{o}' 2>&1 </dev/null\necho $? >'{o}.rc'\necho '{done}'\n",
            o = out.display()
        );
        self.stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let finished = tokio::time::timeout(COMMAND_PATIENCE, async {
            while let Ok(Some(line)) = self.stdout.next_line().await {
                if line == done {
                    return true;
                }
            }
            false
        })
        .await;
        match finished {
            Ok(true) => {}
            Ok(false) => return Err("bash stopped".into()),
            Err(_) => return Err(format!("still running after {COMMAND_PATIENCE:?}")),
        }
        let rc = std::fs::read_to_string(out.with_extension("rc"))
            .map_err(|e| e.to_string())?
            .trim()
            .parse()
            .map_err(|e| format!("exit status: {e}"))?;
        let output =
            String::from_utf8_lossy(&std::fs::read(&out).map_err(|e| e.to_string())?).into_owned();
        Ok((rc, output))
    }
}

/// A doc run against the node at `node_url`.
struct DocRun<'a> {
    doc: &'a str,
    node_url: String,
    /// Doc port → actual port.
    ports: BTreeMap<String, String>,
    bindings: Bindings,
    cache: HashMap<String, Regex>,
    failures: Vec<String>,
    transcript: String,
}

static CARGO_RUN: LazyLock<Regex> = LazyLock::new(|| rx(r"cargo run (?:-q )?--release -- "));
static PORT: LazyLock<Regex> = LazyLock::new(|| rx(r"(localhost[:_]|127\.0\.0\.1:|\s)(\d{4,5})\b"));
static DOC_PORT: LazyLock<Regex> = LazyLock::new(|| rx(r"localhost:(\d{4,5})\b"));

impl<'a> DocRun<'a> {
    fn new(doc: &'a str, text: &str, node_url: &str) -> Self {
        let node_port = node_url.rsplit(':').next().unwrap().to_string();
        let mut ports = BTreeMap::new();
        for c in DOC_PORT.captures_iter(text) {
            let p = c[1].to_string();
            let actual = if p == DOC_NODE_PORT {
                node_port.clone()
            } else {
                free_port().to_string()
            };
            ports.entry(p).or_insert(actual);
        }
        Self {
            doc,
            node_url: node_url.to_string(),
            ports,
            bindings: Bindings::default(),
            cache: HashMap::new(),
            failures: Vec::new(),
            transcript: String::new(),
        }
    }

    fn map_ports(&self, text: &str) -> String {
        PORT.replace_all(text, |c: &regex::Captures| match self.ports.get(&c[2]) {
            Some(p) => format!("{}{p}", &c[1]),
            None => c[0].to_string(),
        })
        .into_owned()
    }

    /// The command a reader's shell runs for the doc's `command`.
    fn actual_command(&self, command: &str) -> String {
        let c = CARGO_RUN.replace_all(command, "govern ");
        self.map_ports(&self.bindings.apply(&c))
    }

    async fn run(&mut self, steps: &[Step], shell: &mut Shell) {
        let http = reqwest::Client::builder()
            .timeout(support::PATIENCE)
            .build()
            .unwrap();
        for step in steps {
            if step.command.trim_start().starts_with("make up") {
                continue; // the node this test started
            }
            settle(&http, &self.node_url).await;
            let command = self.actual_command(&step.command);
            let (rc, output) = match shell.run(&command).await {
                Ok(r) => r,
                Err(e) => {
                    self.fail(step, &command, &e, "");
                    return;
                }
            };
            writeln!(
                self.transcript,
                "{}:{}\n$ {}\n{output}[exit {rc}]\n",
                self.doc, step.line, step.command
            )
            .unwrap();
            if command.trim_end().ends_with('&') {
                self.wait_for_servers(&command).await;
            }
            let Some(shown) = &step.shown else {
                if rc != 0 {
                    self.fail(step, &command, &format!("exit status {rc}"), &output);
                }
                continue;
            };
            let mut why = Vec::new();
            let shows_error = shown.iter().any(|(_, l)| l.starts_with("error:"));
            if shows_error && rc == 0 {
                why.push("the doc shows it failing, but it succeeded".to_string());
            } else if !shows_error && rc != 0 {
                why.push(format!("exit status {rc}, but the doc shows no error"));
            }
            let shown: Vec<Shown> = shown
                .iter()
                .map(|(at, l)| {
                    let text = self.map_ports(l.trim_end());
                    if text == "…" {
                        Shown::Any
                    } else {
                        Shown::Line {
                            at: *at,
                            toks: tokens(&text),
                            text,
                        }
                    }
                })
                .collect();
            let actual: Vec<&str> = output.lines().map(str::trim_end).collect();
            match match_output(&shown, &actual, &self.bindings, &mut self.cache) {
                Some(b) => self.bindings = b,
                None => why.push(
                    match first_mismatch(&shown, &actual, &self.bindings, &mut self.cache) {
                        Some(Shown::Line { at, text, .. }) => {
                            format!("line {at} is not where the doc shows it:\n    {text}")
                        }
                        _ if shown.is_empty() => "the doc shows no output".into(),
                        _ => "the output goes on after the last line the doc shows (`…` for any lines)"
                            .into(),
                    },
                ),
            }
            if !why.is_empty() {
                self.fail(step, &command, &why.join("\n  "), &output);
            }
        }
    }

    /// Wait until the static servers a command started in the background accept connections.
    async fn wait_for_servers(&self, command: &str) {
        for (doc, actual) in &self.ports {
            if doc == DOC_NODE_PORT || !command.contains(actual.as_str()) {
                continue;
            }
            let until = tokio::time::Instant::now() + support::PATIENCE;
            while tokio::net::TcpStream::connect(format!("127.0.0.1:{actual}"))
                .await
                .is_err()
            {
                assert!(
                    tokio::time::Instant::now() < until,
                    "nothing listens on {actual} (the doc's {doc}) after `{command}`"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn fail(&mut self, step: &Step, command: &str, why: &str, output: &str) {
        let mut m = format!("{}:{}: `{}`", self.doc, step.line, step.command);
        if command != step.command {
            write!(m, "\n  run as `{command}`").unwrap();
        }
        write!(m, "\n  {why}\n  actual output:\n").unwrap();
        for l in output.lines() {
            writeln!(m, "    | {l}").unwrap();
        }
        self.failures.push(m);
    }

    fn finish(self) {
        if let Ok(dir) = std::env::var("GOVERN_DOCS_TRANSCRIPT") {
            std::fs::create_dir_all(&dir).unwrap();
            let path = Path::new(&dir).join(format!("{}.txt", self.doc.replace('/', "-")));
            let mut t = self.transcript;
            t.push_str("What the doc's values stood for:\n");
            for (doc, actual) in &self.bindings.actual {
                writeln!(t, "{doc} {actual}").unwrap();
            }
            std::fs::write(path, t).unwrap();
        }
        assert!(
            self.failures.is_empty(),
            "{} drifted from the output ({} commands):\n\n{}",
            self.doc,
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

fn read_doc(doc: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(doc)).unwrap()
}

/// The README's tour, in the working dir of `make up` (its `.govern`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_runs_as_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join("tmp")).unwrap();
    let work = home.join("govern");
    let (_group, url, _stdout, _up) = up(&work, &home, &[]).await;
    let text = read_doc("README.md");
    let steps = steps(&text, Some("A short tour"), true);
    assert!(steps.len() > 10, "the tour has {} commands", steps.len());
    let mut shell = Shell::start(&work, &home);
    let mut run = DocRun::new("README.md", &text, &url);
    run.run(&steps, &mut shell).await;
    run.finish();
}

/// The auditor guide, from `~`: `~/govern` is this clone, the node runs in `~/govern-audit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_guide_runs_as_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join("tmp")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_MANIFEST_DIR"), home.join("govern")).unwrap();
    // As the guide says: without the policy worker, so the log holds only what the guide's
    // commands write, and the sizes it shows are exact.
    let (_group, url, _stdout, _up) = up(
        &home.join("govern-audit"),
        &home,
        &["--no-policy-worker", "--no-signers"],
    )
    .await;
    let doc = "docs/auditor-guide.md";
    let text = read_doc(doc);
    let steps = steps(&text, None, false);
    assert!(steps.len() > 20, "the guide has {} commands", steps.len());
    let mut shell = Shell::start(&home, &home);
    let mut run = DocRun::new(doc, &text, &url);
    run.run(&steps, &mut shell).await;
    run.finish();
}

/// The placeholders are as narrow as they can be: a value of another shape, a second value
/// where the doc shows one, or the same value for two the doc shows apart, does not match.
#[test]
fn placeholders_match_only_what_differs_run_to_run() {
    let mut cache = HashMap::new();
    let line = |s: &str| Shown::Line {
        at: 1,
        text: s.into(),
        toks: tokens(s),
    };
    let shown = [
        line(
            "log govern.localhost/log verified: size 54 root 9bbece63ab100cddadddd69b1d6c2631947612b9ab53c06221583bb51e53326a",
        ),
        Shown::Any,
        line("replayed 54 entries in 54 batches in 0.2 s (217 entries/s); every check passed"),
        line("root 9bbece63ab100cddadddd69b1d6c2631947612b9ab53c06221583bb51e53326a"),
    ];
    let root = "a".repeat(64);
    let other = "b".repeat(64);
    let ok = |r2: &str, size: &str, rate: &str| {
        [
            format!("log govern.localhost/log verified: size {size} root {root}"),
            "replay: 5/54 entries (82/s)".into(),
            format!(
                "replayed 54 entries in 53 batches in 1.5 s ({rate} entries/s); every check passed"
            ),
            format!("root {r2}"),
        ]
    };
    let b = Bindings::default();
    let m = |lines: [String; 4], cache: &mut HashMap<String, Regex>| {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        match_output(&shown, &refs, &b, cache)
    };
    let bound = m(ok(&root, "54", "30"), &mut cache).expect("the same root twice");
    assert_eq!(
        bound.actual["9bbece63ab100cddadddd69b1d6c2631947612b9ab53c06221583bb51e53326a"],
        root
    );
    assert!(
        m(ok(&other, "54", "30"), &mut cache).is_none(),
        "two roots where the doc shows one"
    );
    assert!(
        m(ok(&root, "55", "30"), &mut cache).is_none(),
        "a size is not a placeholder"
    );
    assert!(
        m(ok(&root[..63], "54", "30"), &mut cache).is_none(),
        "a shorter hash"
    );
    assert!(
        m(ok(&root, "54", "3x"), &mut cache).is_none(),
        "a rate is a number"
    );
    // One value for two the doc shows apart.
    let two = [line("a 1111111111111111"), line("b 2222222222222222")];
    let same = ["a 3333333333333333", "b 3333333333333333"];
    assert!(match_output(&two, &same, &b, &mut cache).is_none());
    // But the first characters of two ids (of users made in the same millisecond) may agree.
    let users = [line("user 01a237cd-bb8"), line("user 01a237cd-bbb")];
    let same = ["user 01a237ce-123", "user 01a237ce-123"];
    assert!(match_output(&users, &same, &b, &mut cache).is_some());
    // A key: its ID and material by shape, its name as shown.
    let key =
        tokens("k govern.localhost/log+26e34de9+AdlXyLwBvkFUAcDBEbR9i8U3EESZrDeMYoOl+1mLB5L+");
    let actual = "k govern.localhost/log+a6ddd0c8+AQzst979PcCZM+u4BmB7e/2cCcCF2b6oKdWImdCSGgXj";
    assert!(match_line(&key, actual, &b, &mut cache).is_some());
    let renamed = actual.replace("/log+", "/lag+");
    assert!(match_line(&key, &renamed, &b, &mut cache).is_none());
    // Words and paths stay literal.
    assert_eq!(
        tokens("replay-tests/goldens/scenario-seed-1/trust/manifest-signers.toml"),
        [Tok::Lit(
            "replay-tests/goldens/scenario-seed-1/trust/manifest-signers.toml".into()
        )]
    );
}
