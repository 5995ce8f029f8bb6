//! An instance's `params` table against the parameters its plugin declares
//! (`describe`'s `param-spec` list): required ones present, no unknown
//! keys, every value of the declared TOML type. `rewind check` reports
//! what this finds; the plugin's own `params!` struct refuses the same
//! values when a hook runs.

use serde_json::Value;

use crate::bindings::rewind::hooks::types::{ParamKind, PluginInfo};

/// The longest piece of a value quoted in a message.
const MAX_QUOTED: usize = 80;

/// Every problem of `params` (the JSON the plugin would receive) against
/// the parameters `info` declares, each a message starting with
/// `plugins.<instance>.params.<key>`.
pub fn check(instance: &str, info: &PluginInfo, params: &Value) -> Vec<String> {
    let specs = &info.params;
    let mut problems = Vec::new();
    let path = |key: &str| format!("plugins.{instance}.params.{key}");
    let Some(params) = params.as_object() else {
        problems.push(format!(
            "plugins.{instance}.params: expected a table, found {}",
            describe_value(params)
        ));
        return problems;
    };
    for spec in specs {
        match params.get(&spec.name) {
            None if spec.required => problems.push(format!(
                "{} is required: {}",
                path(&spec.name),
                spec.description
            )),
            None => {}
            Some(value) if !accepts(spec.kind, value) => problems.push(format!(
                "{}: expected {}, found {}",
                path(&spec.name),
                kind_article(spec.kind),
                describe_value(value)
            )),
            Some(_) => {}
        }
    }
    for key in params.keys() {
        if !specs.iter().any(|p| &p.name == key) {
            problems.push(format!(
                "{} is not a parameter of {}; it takes: {}",
                path(key),
                info.name,
                specs
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    problems
}

/// Whether a value of TOML (as JSON) has the type `kind`.
pub fn accepts(kind: ParamKind, value: &Value) -> bool {
    match kind {
        ParamKind::String => value.is_string(),
        ParamKind::Integer => value.is_i64() || value.is_u64(),
        ParamKind::Float => value.is_number(),
        ParamKind::Boolean => value.is_boolean(),
        ParamKind::List => value.is_array(),
        ParamKind::Table => value.is_object(),
        ParamKind::Any => true,
    }
}

/// The TOML name of a kind: "string", "integer", …
pub fn kind_name(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::String => "string",
        ParamKind::Integer => "integer",
        ParamKind::Float => "float",
        ParamKind::Boolean => "boolean",
        ParamKind::List => "list",
        ParamKind::Table => "table",
        ParamKind::Any => "any",
    }
}

fn kind_article(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::String => "a string",
        ParamKind::Integer => "an integer",
        ParamKind::Float => "a number",
        ParamKind::Boolean => "a boolean (true or false)",
        ParamKind::List => "a list",
        ParamKind::Table => "a table",
        ParamKind::Any => "any value",
    }
}

fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) if n.is_f64() => format!("the float {n}"),
        Value::Number(n) => format!("the integer {n}"),
        Value::String(s) => {
            let quoted = serde_json::to_string(s).unwrap_or_default();
            if quoted.chars().count() > MAX_QUOTED {
                let cut: String = quoted.chars().take(MAX_QUOTED).collect();
                format!("the string {cut}…")
            } else {
                format!("the string {quoted}")
            }
        }
        Value::Array(items) => format!("a list of {} item(s)", items.len()),
        Value::Object(_) => "a table".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::bindings::rewind::hooks::types::ParamSpec;

    fn spec(name: &str, required: bool, kind: ParamKind) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            description: format!("the {name}"),
            required,
            default_value: None,
            kind,
        }
    }

    fn info() -> PluginInfo {
        PluginInfo {
            name: "postgres".into(),
            version: "1".into(),
            summary: String::new(),
            capabilities: crate::bindings::rewind::hooks::types::Capabilities {
                exec: vec![],
                paths: vec![],
                env: vec![],
                http: vec![],
            },
            params: specs(),
        }
    }

    fn specs() -> Vec<ParamSpec> {
        vec![
            spec("database", true, ParamKind::String),
            spec("port", false, ParamKind::Integer),
            spec("ratio", false, ParamKind::Float),
            spec("no_owner", false, ParamKind::Boolean),
            spec("caches", false, ParamKind::List),
            spec("headers", false, ParamKind::Table),
            spec("expect", false, ParamKind::Any),
        ]
    }

    #[test]
    fn values_of_the_declared_type_pass() {
        let params = json!({
            "database": "app", "port": 5432, "ratio": 1, "no_owner": true,
            "caches": ["config"], "headers": {"a": "b"}, "expect": [200, 201],
        });
        assert_eq!(check("db", &info(), &params), Vec::<String>::new());
        let params = json!({"database": "app", "ratio": 0.5, "expect": 200});
        assert_eq!(check("db", &info(), &params), Vec::<String>::new());
    }

    #[test]
    fn a_value_of_another_type_names_param_type_and_value() {
        let problems = check("db", &info(), &json!({"database": "app", "port": "5432"}));
        assert_eq!(
            problems,
            [r#"plugins.db.params.port: expected an integer, found the string "5432""#]
        );
        let problems = check(
            "db",
            &info(),
            &json!({"database": 5, "port": 1.5, "no_owner": "yes", "caches": "config",
                    "headers": [1], "ratio": false}),
        );
        assert_eq!(
            problems,
            [
                "plugins.db.params.database: expected a string, found the integer 5",
                "plugins.db.params.port: expected an integer, found the float 1.5",
                "plugins.db.params.ratio: expected a number, found the boolean false",
                r#"plugins.db.params.no_owner: expected a boolean (true or false), found the string "yes""#,
                r#"plugins.db.params.caches: expected a list, found the string "config""#,
                "plugins.db.params.headers: expected a table, found a list of 1 item(s)",
            ]
        );
    }

    #[test]
    fn required_and_unknown_keys() {
        let problems = check("db", &info(), &json!({"prot": 1}));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(
            problems[0],
            "plugins.db.params.database is required: the database"
        );
        assert!(
            problems[1].starts_with("plugins.db.params.prot is not a parameter of postgres")
                && problems[1].contains("database, port,"),
            "{}",
            problems[1]
        );
    }

    #[test]
    fn long_strings_are_cut() {
        let long = "x".repeat(500);
        let problems = check("db", &info(), &json!({"database": "a", "port": long}));
        assert!(problems[0].len() < 200 && problems[0].ends_with('…'));
    }

    #[test]
    fn kind_names_are_the_wit_case_names() {
        let all = [
            ParamKind::String,
            ParamKind::Integer,
            ParamKind::Float,
            ParamKind::Boolean,
            ParamKind::List,
            ParamKind::Table,
            ParamKind::Any,
        ];
        let names: Vec<&str> = all.into_iter().map(kind_name).collect();
        assert_eq!(names, crate::bindings::wit_enum_cases("param-kind"));
    }
}
