//! Asterisk's configuration file syntax, read the way Asterisk's own `config.c` reads it:
//! `[section]` headers with `(!)` (a template), `(name,...)` (inherit from those sections) and
//! `(+)` (add to the section of that name), `key = value` and `key => value` options, `;`
//! comments (`\;` is a literal semicolon), `;-- ... --;` block comments, and `#include` /
//! `#tryinclude` of other files (wildcards allowed in the file name) relative to the
//! configuration directory. An included file continues the section it was included in.
//!
//! Read-only and bounded: include depth and the number of files read are capped, include
//! loops are cut, and `#exec` is never run (a warning says so). This module must never execute
//! anything or write anything.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How deep `#include` may nest.
const MAX_DEPTH: usize = 8;
/// How many files one configuration may read, includes included.
const MAX_FILES: usize = 64;
/// How many bytes one file may have (Asterisk configurations are kilobytes).
const MAX_BYTES: u64 = 4 << 20;
/// How deep template inheritance may go.
const MAX_INHERIT: usize = 8;

/// One `key = value` option; the key in lower case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opt {
    pub key: String,
    pub value: String,
}

/// One `[section]`: its name, whether it is a template, whose options it inherits, its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub template: bool,
    pub inherits: Vec<String>,
    pub opts: Vec<Opt>,
}

/// A configuration file with its includes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conf {
    /// Options before the first section header.
    pub top: Vec<Opt>,
    pub sections: Vec<Section>,
    /// What could not be read or was not done (`#exec`, a missing `#include`, a loop).
    pub warnings: Vec<String>,
}

impl Conf {
    /// The sections that are objects (not templates).
    pub fn objects(&self) -> impl Iterator<Item = &Section> {
        self.sections.iter().filter(|s| !s.template)
    }

    /// Section names to the first section of that name (what inheritance refers to).
    pub fn index(&self) -> HashMap<&str, usize> {
        let mut out = HashMap::new();
        for (i, s) in self.sections.iter().enumerate() {
            out.entry(s.name.as_str()).or_insert(i);
        }
        out
    }

    /// A section's options with what it inherits first (templates in the order named, each
    /// with its own inheritance), as Asterisk applies them. `index` is [`Conf::index`].
    pub fn effective<'a>(
        &'a self,
        index: &HashMap<&str, usize>,
        section: &'a Section,
    ) -> Vec<&'a Opt> {
        let mut out = Vec::new();
        self.inherit_into(index, section, 0, &mut out);
        out
    }

    fn inherit_into<'a>(
        &'a self,
        index: &HashMap<&str, usize>,
        section: &'a Section,
        depth: usize,
        out: &mut Vec<&'a Opt>,
    ) {
        if depth <= MAX_INHERIT {
            for name in &section.inherits {
                if let Some(t) = index.get(name.as_str()).map(|&i| &self.sections[i]) {
                    if !std::ptr::eq(t, section) {
                        self.inherit_into(index, t, depth + 1, out);
                    }
                }
            }
        }
        out.extend(section.opts.iter());
    }
}

/// Where an `#include` is looked up: the files it names, each with its text, or why not.
pub type Includer<'a> = dyn FnMut(&str) -> Result<Vec<(String, String)>, String> + 'a;

/// Read `dir/file` and everything it includes. `Ok(None)` when the file does not exist.
pub fn read(dir: &Path, file: &str) -> Result<Option<Conf>, String> {
    let path = dir.join(file);
    let text = match read_text(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut includer = |pattern: &str| include_files(dir, pattern);
    Ok(Some(parse(&text, file, &mut includer)))
}

fn read_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_BYTES)
        .read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The files an `#include` names (relative to `dir` unless absolute; `*` and `?` in the file
/// name), sorted as glob(3) sorts them.
fn include_files(dir: &Path, pattern: &str) -> Result<Vec<(String, String)>, String> {
    let path = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        dir.join(pattern)
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = path.parent().unwrap_or(dir).to_path_buf();
    let paths: Vec<PathBuf> = if name.contains(['*', '?']) {
        let entries =
            std::fs::read_dir(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| wildcard(&name, &e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found
    } else {
        vec![path]
    };
    paths
        .into_iter()
        .map(|p| {
            read_text(&p)
                .map(|t| (p.display().to_string(), t))
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

/// A shell wildcard (`*`, `?`) against a file name; a leading dot is never matched by one.
fn wildcard(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// Parse configuration text named `label`; `include` supplies the files an `#include` names.
pub fn parse(text: &str, label: &str, include: &mut Includer<'_>) -> Conf {
    let mut r = Reader {
        conf: Conf::default(),
        current: None,
        block: 0,
        files: 1,
        stack: vec![label.to_string()],
    };
    r.feed(text, label, include);
    r.conf
}

struct Reader {
    conf: Conf,
    /// The index of the section options go to (`None`: before any header).
    current: Option<usize>,
    /// Nesting of `;-- --;` block comments.
    block: usize,
    files: usize,
    /// The files being read, outermost first (include loops are cut).
    stack: Vec<String>,
}

impl Reader {
    fn feed(&mut self, text: &str, label: &str, include: &mut Includer<'_>) {
        for (n, raw) in text.lines().enumerate() {
            let line = self.strip_comments(raw);
            let t = line.trim();
            if t.is_empty() {
                continue;
            }
            if let Some(directive) = t.strip_prefix('#') {
                self.directive(directive, &format!("{label}:{}", n + 1), include);
            } else if t.starts_with('[') {
                self.header(t);
            } else if let Some((k, v)) = t.split_once('=') {
                let key = k.trim().trim_end_matches('+').trim().to_ascii_lowercase();
                let value = v.strip_prefix('>').unwrap_or(v).trim().to_string();
                let opt = Opt { key, value };
                match self.current {
                    Some(i) => self.conf.sections[i].opts.push(opt),
                    None => self.conf.top.push(opt),
                }
            }
        }
    }

    /// The line without comments: `;` to the end unless escaped (`\;` is a semicolon), and
    /// `;-- ... --;` blocks, which may span lines and nest.
    fn strip_comments(&mut self, line: &str) -> String {
        let b = line.as_bytes();
        let mut out: Vec<u8> = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let rest = &b[i..];
            if rest.starts_with(b";--") {
                self.block += 1;
                i += 3;
            } else if self.block > 0 {
                if rest.starts_with(b"--;") {
                    self.block -= 1;
                    i += 3;
                } else {
                    i += 1;
                }
            } else if rest.starts_with(b"\\;") {
                out.push(b';');
                i += 2;
            } else if b[i] == b';' {
                break;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `[name]`, `[name](!)`, `[name](tmpl,...)`, `[name](!,tmpl)`, `[name](+)`.
    fn header(&mut self, t: &str) {
        let Some(end) = t.find(']') else {
            self.conf
                .warnings
                .push(format!("unterminated section header `{t}`"));
            return;
        };
        let name = t[1..end].trim().to_string();
        let mut section = Section {
            name,
            ..Section::default()
        };
        let mut append = false;
        let rest = t[end + 1..].trim();
        if let Some(inner) = rest.strip_prefix('(').and_then(|r| r.split(')').next()) {
            for word in inner.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                match word {
                    "!" => section.template = true,
                    "+" => append = true,
                    w => section.inherits.push(w.to_string()),
                }
            }
        }
        if append {
            if let Some(i) = self
                .conf
                .sections
                .iter()
                .rposition(|s| s.name == section.name)
            {
                self.current = Some(i);
                return;
            }
        }
        self.conf.sections.push(section);
        self.current = Some(self.conf.sections.len() - 1);
    }

    /// `#include`, `#tryinclude` (read), `#exec` (never run), anything else (ignored).
    fn directive(&mut self, d: &str, at: &str, include: &mut Includer<'_>) {
        let (word, arg) = d.split_once(char::is_whitespace).unwrap_or((d, ""));
        let arg = arg.trim();
        let arg = arg
            .strip_prefix('"')
            .and_then(|a| a.strip_suffix('"'))
            .or_else(|| arg.strip_prefix('<').and_then(|a| a.strip_suffix('>')))
            .unwrap_or(arg);
        match word {
            "include" | "tryinclude" => {
                if self.stack.len() > MAX_DEPTH {
                    self.conf
                        .warnings
                        .push(format!("{at}: #include {arg}: nested too deep"));
                    return;
                }
                let files = match include(arg) {
                    Ok(f) => f,
                    Err(e) if word == "include" => {
                        self.conf.warnings.push(format!("{at}: #include: {e}"));
                        return;
                    }
                    Err(_) => return,
                };
                for (label, text) in files {
                    if self.stack.contains(&label) {
                        self.conf
                            .warnings
                            .push(format!("{at}: #include {label}: an include loop"));
                        continue;
                    }
                    if self.files >= MAX_FILES {
                        self.conf.warnings.push(format!(
                            "{at}: more than {MAX_FILES} files; {label} not read"
                        ));
                        return;
                    }
                    self.files += 1;
                    self.stack.push(label.clone());
                    self.feed(&text, &label, include);
                    self.stack.pop();
                }
            }
            "exec" => self
                .conf
                .warnings
                .push(format!("{at}: #exec {arg} is never run by sipban")),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(text: &str, files: &[(&str, &str)]) -> Conf {
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        let mut inc = |name: &str| -> Result<Vec<(String, String)>, String> {
            let found: Vec<(String, String)> = files
                .iter()
                .filter(|(n, _)| wildcard(name, n))
                .cloned()
                .collect();
            if found.is_empty() {
                Err(format!("{name}: not found"))
            } else {
                Ok(found)
            }
        };
        parse(text, "main.conf", &mut inc)
    }

    fn opts(s: &Section) -> Vec<(String, String)> {
        s.opts
            .iter()
            .map(|o| (o.key.clone(), o.value.clone()))
            .collect()
    }

    #[test]
    fn sections_options_and_comments() {
        let c = parse_with(
            "top=1\n[a] ; a comment\nKey = value ; trailing\nreg => x@y\nuri=sip:p\\;lr\n\
             ;-- a block\n[hidden]\nhost=1.2.3.4 --; after=yes\n; whole line\n  \n[b]\nk+=v\n",
            &[],
        );
        assert_eq!(
            c.top,
            vec![Opt {
                key: "top".into(),
                value: "1".into()
            }]
        );
        assert_eq!(c.sections.len(), 2);
        assert_eq!(c.sections[0].name, "a");
        assert_eq!(
            opts(&c.sections[0]),
            [
                ("key".to_string(), "value".to_string()),
                ("reg".into(), "x@y".into()),
                ("uri".into(), "sip:p;lr".into()),
                ("after".into(), "yes".into()),
            ]
        );
        assert_eq!(opts(&c.sections[1]), [("k".to_string(), "v".to_string())]);
    }

    #[test]
    fn templates_inheritance_and_appends() {
        let c = parse_with(
            "[t](!)\ntype=registration\nserver_uri=sip:a\n[u](!,t)\nretry=1\n\
             [r](u)\nserver_uri=sip:b\n[r2] (t)\n[same]\ntype=aor\n[same]\ntype=endpoint\n\
             [same](+)\ncontact=sip:c\n[loop](loop)\nx=1\n",
            &[],
        );
        let names: Vec<&str> = c.objects().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["r", "r2", "same", "same", "loop"]);
        let r = c.objects().next().unwrap();
        assert!(c.sections[1].template && c.sections[1].inherits == ["t"]);
        let index = c.index();
        let eff: Vec<(&str, &str)> = c
            .effective(&index, r)
            .iter()
            .map(|o| (o.key.as_str(), o.value.as_str()))
            .collect();
        assert_eq!(
            eff,
            [
                ("type", "registration"),
                ("server_uri", "sip:a"),
                ("retry", "1"),
                ("server_uri", "sip:b")
            ]
        );
        // `(+)` adds to the last section of that name.
        assert_eq!(
            opts(&c.sections[5]),
            [
                ("type".to_string(), "endpoint".to_string()),
                ("contact".into(), "sip:c".into())
            ]
        );
        // A section that names itself inherits nothing more (and does not loop).
        let l = c.objects().last().unwrap();
        assert_eq!(c.effective(&index, l).len(), 1);
    }

    #[test]
    fn includes_continue_the_section_and_are_bounded() {
        let c = parse_with(
            "[a]\n#include \"inc.conf\"\n#tryinclude <missing.conf>\n#include missing.conf\n\
             #exec /bin/evil\n#include d/*.conf\n[b]\n#include self.conf\n",
            &[
                ("inc.conf", "host=1.1.1.1\n[c]\nhost=2.2.2.2\n"),
                ("d/x.conf", "[dx]\nhost=3.3.3.3\n"),
                ("d/y.conf", "[dy]\nhost=4.4.4.4\n"),
                ("self.conf", "k=v\n#include self.conf\n"),
            ],
        );
        let names: Vec<&str> = c.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "dx", "dy", "b"]);
        assert_eq!(
            opts(&c.sections[0]),
            [("host".to_string(), "1.1.1.1".to_string())]
        );
        assert_eq!(opts(&c.sections[4]), [("k".to_string(), "v".to_string())]);
        let w = c.warnings.join("\n");
        assert!(w.contains("missing.conf: not found"), "{w}");
        assert!(!w.contains("#include <missing.conf>"), "{w}");
        assert!(w.contains("#exec /bin/evil is never run"), "{w}");
        assert!(w.contains("an include loop"), "{w}");
    }

    #[test]
    fn files_on_disk_with_wildcards() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("inc")).unwrap();
        std::fs::write(d.path().join("main.conf"), "#include inc/*.conf\n").unwrap();
        std::fs::write(d.path().join("inc/b.conf"), "[b]\n").unwrap();
        std::fs::write(d.path().join("inc/a.conf"), "[a]\n").unwrap();
        std::fs::write(d.path().join("inc/.hidden.conf"), "[h]\n").unwrap();
        std::fs::write(d.path().join("inc/c.txt"), "[c]\n").unwrap();
        let c = read(d.path(), "main.conf").unwrap().unwrap();
        let names: Vec<&str> = c.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(read(d.path(), "absent.conf").unwrap().is_none());
    }
}
