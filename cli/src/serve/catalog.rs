//! The tools `toolcell serve` offers: one per manifest, from the policies
//! directory and the `--manifest` files. A manifest that fails to load is
//! reported and skipped; the others are served. The catalog is rebuilt when
//! a manifest or a component changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rmcp::model::{JsonObject, Tool as McpTool};
use toolcell_runtime::{Manifest, Runtime, Shape, Tool};

/// Where the manifests come from.
#[derive(Clone, Debug)]
pub struct Sources {
    pub dir: Option<PathBuf>,
    pub files: Vec<PathBuf>,
}

/// One served tool.
pub struct Entry {
    pub tool: Arc<Tool>,
    /// For a plain component: which of its functions this tool calls.
    pub function: Option<String>,
    pub mcp: McpTool,
    /// Whether `structuredContent` goes with results (the output schema is an object).
    pub structured: bool,
}

/// The tools being served, and what could not be.
#[derive(Default)]
pub struct Catalog {
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
    /// One line per manifest that was skipped, naming the file and the reason.
    pub problems: Vec<String>,
    /// What the catalog was built from, to notice changes.
    pub fingerprint: Vec<(PathBuf, Option<SystemTime>, u64)>,
}

impl Sources {
    /// The manifest files, sorted, so names resolve the same way every time.
    pub fn manifests(&self) -> (Vec<PathBuf>, Vec<String>) {
        let mut files = self.files.clone();
        let mut problems = Vec::new();
        if let Some(dir) = &self.dir {
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(error) => problems.push(format!("{}: {error}", dir.display())),
            }
        }
        (files, problems)
    }

    fn fingerprint(&self, components: &[PathBuf]) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
        let (files, _) = self.manifests();
        stamps(files.into_iter().chain(components.iter().cloned()))
    }

    /// True when a manifest or component was added, removed or changed
    /// since `catalog` was built.
    pub fn changed(&self, catalog: &Catalog) -> bool {
        let components: Vec<PathBuf> = catalog.entries.iter().map(|e| e.tool.manifest.component.clone()).collect();
        self.fingerprint(&components) != catalog.fingerprint
    }
}

/// Each file with its change time and size, to notice when one changes.
pub fn stamps(files: impl IntoIterator<Item = PathBuf>) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    files
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map_or(0, |m| m.len());
            (path, modified, len)
        })
        .collect()
}

fn object(value: &serde_json::Value) -> Option<JsonObject> {
    value.as_object().cloned()
}

impl Catalog {
    /// Loads and describes every manifest.
    pub async fn load(runtime: &Runtime, sources: &Sources) -> Catalog {
        let (files, mut problems) = sources.manifests();
        let mut catalog = Catalog::default();
        for file in files {
            match Catalog::entries(runtime, &file).await {
                Ok((entries, skipped)) => {
                    for reason in skipped {
                        problems.push(format!("{}: function {reason}; not offered", file.display()));
                    }
                    for entry in entries {
                        let name = entry.mcp.name.to_string();
                        if let Some(&first) = catalog.by_name.get(&name) {
                            let other = catalog.entries[first].tool.manifest.component.display().to_string();
                            problems.push(format!(
                                "{}: tool name `{name}` is already served (component {other}); skipped",
                                file.display()
                            ));
                            continue;
                        }
                        catalog.by_name.insert(name, catalog.entries.len());
                        catalog.entries.push(entry);
                    }
                }
                Err(error) => problems.push(format!("{}: {error}", file.display())),
            }
        }
        let components: Vec<PathBuf> = catalog.entries.iter().map(|e| e.tool.manifest.component.clone()).collect();
        catalog.fingerprint = sources.fingerprint(&components);
        catalog.problems = problems;
        catalog
    }

    /// The tools of one manifest: one, or one per function of a plain
    /// component (named `<tool>.<function>`), and the functions left out.
    async fn entries(runtime: &Runtime, file: &Path) -> Result<(Vec<Entry>, Vec<String>), String> {
        let manifest = Manifest::load(file).map_err(|e| e.to_string())?;
        let tool = runtime.load_tool(manifest).map_err(|e| e.to_string())?;
        if tool.component.shape != Shape::Plain {
            return Ok((vec![Catalog::entry(runtime, tool).await?], Vec::new()));
        }
        let entries = tool
            .component
            .functions
            .iter()
            .map(|function| {
                let name = format!("{}.{}", tool.manifest.name, function.name);
                let description = format!("{} — `{}`", tool.manifest.purpose, function.signature);
                let input = object(&function.input_schema).expect("plain input schemas are objects");
                let mut mcp = McpTool::new(name, description, Arc::new(input));
                mcp.output_schema = object(&function.output_schema).map(Arc::new);
                Entry { tool: tool.clone(), function: Some(function.name.clone()), mcp, structured: true }
            })
            .collect();
        Ok((entries, tool.component.skipped_functions.clone()))
    }

    async fn entry(runtime: &Runtime, tool: Arc<Tool>) -> Result<Entry, String> {
        let info = runtime.describe(&tool).await.map_err(|e| format!("describe: {e}"))?;
        let mut input = object(&info.input_schema)
            .ok_or("the tool's input schema is not a JSON object; MCP needs one".to_owned())?;
        // MCP arguments are always an object, and clients insist the schema
        // says so even when it is a `oneOf` of object variants.
        match input.get("type") {
            None => {
                input.insert("type".into(), "object".into());
            }
            Some(kind) if kind != "object" => {
                return Err(format!("the tool's input schema has type {kind}; MCP tools take an object"));
            }
            Some(_) => {}
        }
        let name = tool.manifest.name.clone();
        let description = match tool.component.shape {
            Shape::Command => format!("{} (a WASI command: give `args` and optional `stdin`)", tool.manifest.purpose),
            Shape::Tool | Shape::Plain => info.description.clone(),
        };
        let mut mcp = McpTool::new(name, description, Arc::new(input));
        // MCP's structured output must be an object; anything else goes as text only.
        let output = match tool.component.shape {
            Shape::Tool | Shape::Plain => {
                info.output_schema.as_ref().filter(|s| s["type"] == "object").and_then(object)
            }
            Shape::Command => object(&serde_json::json!({
                "type": "object",
                "properties": {
                    "exit_code": { "type": "integer" },
                    "stdout": { "type": "string" },
                    "stderr": { "type": "string" }
                },
                "required": ["exit_code", "stdout", "stderr"]
            })),
        };
        let structured = output.is_some();
        mcp.output_schema = output.map(Arc::new);
        Ok(Entry { tool, function: None, mcp, structured })
    }

    pub fn tools(&self) -> Vec<McpTool> {
        self.entries.iter().map(|e| e.mcp.clone()).collect()
    }

    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}
