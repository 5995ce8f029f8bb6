//! One declaration of a plugin's parameters: [`params!`](crate::params!)
//! makes the typed struct (with its defaults) and the [`ParamSpec`] list
//! `describe` returns, so `rewind check` validates exactly what the hooks
//! read.

use std::collections::{BTreeMap, HashMap};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{HookError, ParamKind, ParamSpec};

/// A type a parameter can have, and the TOML type the host checks for it.
///
/// Implemented for strings, integers, floats, `bool`, `Vec<T>`, maps keyed
/// by `String`, `serde_json::Value` (anything) and `Option<T>` (not
/// required). For your own type, say which TOML type it is read from:
///
/// ```
/// #[derive(serde::Deserialize, serde::Serialize)]
/// #[serde(rename_all = "lowercase")]
/// enum Mode { Clean, Recreate }
///
/// impl rewind_sdk::ParamType for Mode {
///     const KIND: rewind_sdk::ParamKind = rewind_sdk::ParamKind::String;
/// }
/// ```
pub trait ParamType: Sized {
    /// The TOML type of a value.
    const KIND: ParamKind;

    /// The value of a parameter that is absent and has no default: only
    /// `Option` has one (`None`); for every other type it is required.
    fn absent() -> Option<Self> {
        None
    }
}

macro_rules! param_types {
    ($kind:ident: $($ty:ty),*) => {
        $(impl ParamType for $ty {
            const KIND: ParamKind = ParamKind::$kind;
        })*
    };
}

param_types!(String: String, std::path::PathBuf, char);
param_types!(Integer: u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);
param_types!(Float: f32, f64);
param_types!(Boolean: bool);
param_types!(Table: Map<String, Value>);
param_types!(Any: Value);

impl<T> ParamType for Vec<T> {
    const KIND: ParamKind = ParamKind::List;
}

impl<T> ParamType for BTreeMap<String, T> {
    const KIND: ParamKind = ParamKind::Table;
}

impl<T, S> ParamType for HashMap<String, T, S> {
    const KIND: ParamKind = ParamKind::Table;
}

impl<T: ParamType> ParamType for Option<T> {
    const KIND: ParamKind = T::KIND;

    fn absent() -> Option<Self> {
        Some(None)
    }
}

/// What a default in `params!` may be written as, for a field of type `T`:
/// a `T` itself, a `&str` for a `String`, an array of `&str` for a
/// `Vec<String>`.
pub trait IntoDefault<T> {
    /// The default as a `T`.
    fn into_default(self) -> T;
}

impl<T> IntoDefault<T> for T {
    fn into_default(self) -> T {
        self
    }
}

impl IntoDefault<String> for &str {
    fn into_default(self) -> String {
        self.to_string()
    }
}

impl<const N: usize> IntoDefault<Vec<String>> for [&str; N] {
    fn into_default(self) -> Vec<String> {
        self.iter().map(|s| s.to_string()).collect()
    }
}

impl ParamKind {
    /// The TOML name of the type: "string", "integer", …
    pub fn name(self) -> &'static str {
        match self {
            ParamKind::String => "string",
            ParamKind::Integer => "integer",
            ParamKind::Float => "float",
            ParamKind::Boolean => "boolean",
            ParamKind::List => "list",
            ParamKind::Table => "table",
            ParamKind::Any => "any",
        }
    }
}

/// Read a secret (a password, a token, a webhook URL) from the granted
/// environment variable `var`. Absent variables (not set on the host, or
/// not in the instance's `grants.env`) are an `invalid-input` error that
/// names the grant to add.
pub fn secret_from_env(var: &str) -> Result<String, HookError> {
    std::env::var(var).map_err(|_| {
        HookError::invalid_input(format!(
            "{var} is not set, or not in grants.env (add grants.env = [\"{var}\"])"
        ))
    })
}

/// A value as TOML text: `"127.0.0.1"`, `5432`, `["config"]`, `{ a = 1 }`.
/// `None` for `null`, which TOML cannot write.
pub fn toml_text(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => toml_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().filter_map(toml_text).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) if map.is_empty() => "{}".to_string(),
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .filter_map(|(k, v)| Some(format!("{} = {}", toml_key(k), toml_text(v)?)))
                .collect();
            format!("{{ {} }}", entries.join(", "))
        }
    })
}

fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        toml_string(key)
    }
}

fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// What `params!` expands to calls these; not part of the API.

#[doc(hidden)]
pub fn __spec<T: ParamType>(name: &str, doc: &[&str], default: Option<Value>) -> ParamSpec {
    let description = doc
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    ParamSpec {
        name: name.to_string(),
        description,
        required: default.is_none() && T::absent().is_none(),
        default_value: default.as_ref().and_then(toml_text),
        kind: T::KIND,
    }
}

#[doc(hidden)]
pub fn __default_json<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[doc(hidden)]
pub fn __take<T: ParamType + DeserializeOwned>(
    map: &mut Map<String, Value>,
    name: &'static str,
    default: Option<fn() -> T>,
) -> Result<T, String> {
    match map.remove(name) {
        Some(value) => serde_json::from_value(value).map_err(|err| format!("params.{name}: {err}")),
        None => match default {
            Some(default) => Ok(default()),
            None => T::absent().ok_or_else(|| format!("missing field `{name}`")),
        },
    }
}

#[doc(hidden)]
pub fn __unknown(map: &Map<String, Value>, fields: &'static [&'static str]) -> Option<String> {
    let key = map.keys().find(|k| !fields.contains(&k.as_str()))?;
    Some(format!(
        "unknown field `{key}`, expected one of {}",
        fields
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Declare a plugin's parameters once: the struct hooks read with
/// [`Context::params`](crate::Context::params), and `Params::specs()`, the
/// [`ParamSpec`] list `describe` returns.
///
/// ```
/// rewind_sdk::params! {
///     pub struct Params {
///         /// The database to back up and restore
///         database: String,
///         /// Server host
///         host: String = "127.0.0.1",
///         /// Server port
///         port: u16 = 5432,
///         /// Do not restore object owners
///         no_owner: bool = false,
///         /// Restore into this database instead
///         restore_database: Option<String>,
///     }
/// }
///
/// let specs = Params::specs();
/// assert!(specs[0].required);
/// assert_eq!(specs[1].default_value.as_deref(), Some("\"127.0.0.1\""));
/// assert_eq!(specs[2].kind, rewind_sdk::ParamKind::Integer);
/// ```
///
/// Each field is one parameter:
/// - `name: T` is required, unless `T` is an `Option` (absent = `None`);
/// - `name: T = default` is optional; the default is any expression of
///   type `T` (or a `&str` for a `String`, `["a", "b"]` for a
///   `Vec<String>`), and its type must implement `serde::Serialize` so
///   that `describe` can show it as TOML;
/// - its `///` comment is the description `rewind plugins inspect` shows
///   (keep longer notes in `//` comments);
/// - its type gives the TOML type `rewind check` enforces, through
///   [`ParamType`].
///
/// Unknown keys are refused, naming the key (a typo in rewind.toml). The
/// struct takes attributes (`#[derive(Debug, Clone)]`); do not derive
/// `Deserialize`, which the macro implements.
#[macro_export]
macro_rules! params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $fvis:vis $field:ident : $ty:ty $(= $default:expr)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $(
                $(#[doc = $doc])*
                $fvis $field: $ty,
            )*
        }

        impl $name {
            /// The parameter names, in declaration order.
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// What `describe` returns as `params`.
            pub fn specs() -> ::std::vec::Vec<$crate::ParamSpec> {
                ::std::vec![$(
                    $crate::params::__spec::<$ty>(
                        stringify!($field),
                        &[$($doc),*],
                        $crate::__param_default!(json, $ty $(, $default)?),
                    )
                ),*]
            }
        }

        impl<'de> $crate::__serde::Deserialize<'de> for $name {
            fn deserialize<D>(deserializer: D) -> ::std::result::Result<Self, D::Error>
            where
                D: $crate::__serde::Deserializer<'de>,
            {
                use $crate::__serde::de::Error as _;
                let mut map = <$crate::__serde_json::Map<
                    ::std::string::String,
                    $crate::__serde_json::Value,
                > as $crate::__serde::Deserialize>::deserialize(deserializer)?;
                if let Some(err) = $crate::params::__unknown(&map, Self::FIELDS) {
                    return Err(D::Error::custom(err));
                }
                Ok($name {
                    $(
                        $field: $crate::params::__take::<$ty>(
                            &mut map,
                            stringify!($field),
                            $crate::__param_default!(value, $ty $(, $default)?),
                        )
                        .map_err(D::Error::custom)?,
                    )*
                })
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __param_default {
    (json, $ty:ty) => {
        ::std::option::Option::None
    };
    (json, $ty:ty, $default:expr) => {
        ::std::option::Option::Some($crate::params::__default_json::<$ty>(
            $crate::params::IntoDefault::<$ty>::into_default($default),
        ))
    };
    (value, $ty:ty) => {
        ::std::option::Option::None
    };
    (value, $ty:ty, $default:expr) => {
        ::std::option::Option::Some(
            (|| $crate::params::IntoDefault::<$ty>::into_default($default)) as fn() -> $ty,
        )
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq, Clone, Copy)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Clean,
        Recreate,
    }

    impl ParamType for Mode {
        const KIND: ParamKind = ParamKind::String;
    }

    crate::params! {
        #[derive(Debug)]
        struct Params {
            /// The database to back up and restore
            database: String,
            /// Server host
            host: String = "127.0.0.1",
            /// Server port
            port: u16 = 5432,
            /// Do not restore
            /// object owners
            no_owner: bool = false,
            /// Restore into this database instead
            restore_database: Option<String>,
            // Not in the description.
            /// How to restore
            mode: Mode = Mode::Clean,
            caches: Vec<String> = ["config"],
            headers: BTreeMap<String, String>,
            env: BTreeMap<String, String> = BTreeMap::new(),
            ratio: f64 = 0.5,
            extra: Option<serde_json::Value>,
        }
    }

    fn parse(json: &str) -> Result<Params, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    fn spec(name: &str) -> ParamSpec {
        Params::specs()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
    }

    #[test]
    fn defaults_fill_what_is_absent() {
        let p = parse(r#"{"database": "app", "headers": {}}"#).unwrap();
        assert_eq!(p.database, "app");
        assert_eq!(p.host, "127.0.0.1");
        assert_eq!(p.port, 5432);
        assert!(!p.no_owner);
        assert_eq!(p.restore_database, None);
        assert_eq!(p.mode, Mode::Clean);
        assert_eq!(p.caches, ["config"]);
        assert!(p.env.is_empty());
        assert_eq!(p.ratio, 0.5);
        assert_eq!(p.extra, None);
    }

    #[test]
    fn given_values_win() {
        let p = parse(
            r#"{"database": "app", "headers": {"a": "b"}, "host": "db", "port": 6543,
                "no_owner": true, "restore_database": "copy", "mode": "recreate",
                "caches": [], "extra": [1, "x"]}"#,
        )
        .unwrap();
        assert_eq!(p.host, "db");
        assert_eq!(p.port, 6543);
        assert!(p.no_owner);
        assert_eq!(p.restore_database.as_deref(), Some("copy"));
        assert_eq!(p.mode, Mode::Recreate);
        assert!(p.caches.is_empty());
        assert_eq!(p.headers["a"], "b");
        assert_eq!(p.extra, Some(serde_json::json!([1, "x"])));
    }

    #[test]
    fn required_unknown_and_wrong_types_are_refused_by_name() {
        let err = parse(r#"{"headers": {}}"#).unwrap_err();
        assert!(err.contains("missing field `database`"), "{err}");
        let err = parse(r#"{"database": "app"}"#).unwrap_err();
        assert!(err.contains("missing field `headers`"), "{err}");
        let err = parse(r#"{"database": "app", "headers": {}, "prot": 1}"#).unwrap_err();
        assert!(
            err.contains("unknown field `prot`") && err.contains("`port`"),
            "{err}"
        );
        let err = parse(r#"{"database": "app", "headers": {}, "port": "5432"}"#).unwrap_err();
        assert!(
            err.contains("params.port: invalid type: string \"5432\""),
            "{err}"
        );
        let err = parse(r#"{"database": "app", "headers": {}, "mode": "wipe"}"#).unwrap_err();
        assert!(err.contains("params.mode: unknown variant `wipe`"), "{err}");
    }

    #[test]
    fn specs_follow_the_declaration() {
        let names: Vec<String> = Params::specs().into_iter().map(|s| s.name).collect();
        assert_eq!(names, Params::FIELDS);
        assert_eq!(
            names,
            [
                "database",
                "host",
                "port",
                "no_owner",
                "restore_database",
                "mode",
                "caches",
                "headers",
                "env",
                "ratio",
                "extra"
            ]
        );

        let database = spec("database");
        assert!(database.required);
        assert_eq!(database.default_value, None);
        assert_eq!(database.kind, ParamKind::String);
        assert_eq!(database.description, "The database to back up and restore");

        let cases: [(&str, bool, Option<&str>, ParamKind); 10] = [
            ("host", false, Some("\"127.0.0.1\""), ParamKind::String),
            ("port", false, Some("5432"), ParamKind::Integer),
            ("no_owner", false, Some("false"), ParamKind::Boolean),
            ("restore_database", false, None, ParamKind::String),
            ("mode", false, Some("\"clean\""), ParamKind::String),
            ("caches", false, Some("[\"config\"]"), ParamKind::List),
            ("headers", true, None, ParamKind::Table),
            ("env", false, Some("{}"), ParamKind::Table),
            ("ratio", false, Some("0.5"), ParamKind::Float),
            ("extra", false, None, ParamKind::Any),
        ];
        for (name, required, default, kind) in cases {
            let s = spec(name);
            assert_eq!(s.required, required, "{name}");
            assert_eq!(s.default_value.as_deref(), default, "{name}");
            assert_eq!(s.kind, kind, "{name}");
        }
        assert_eq!(spec("no_owner").description, "Do not restore object owners");
        assert_eq!(spec("mode").description, "How to restore");
        assert_eq!(spec("caches").description, "");
    }

    #[test]
    fn toml_text_writes_toml() {
        use serde_json::json;
        assert_eq!(
            toml_text(&json!("a\"b\\c\n\u{7f}")).unwrap(),
            r#""a\"b\\c\n\u007F""#
        );
        assert_eq!(
            toml_text(&json!({"a": 1, "b c": [true, "x"]})).unwrap(),
            r#"{ a = 1, "b c" = [true, "x"] }"#
        );
        assert_eq!(toml_text(&json!(null)), None);
    }

    #[test]
    fn secrets_come_from_granted_variables() {
        let err = secret_from_env("REWIND_SDK_TEST_SURELY_UNSET").unwrap_err();
        assert!(
            err.message()
                .contains("add grants.env = [\"REWIND_SDK_TEST_SURELY_UNSET\"]"),
            "{}",
            err.message()
        );
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
        let names: Vec<&str> = all.into_iter().map(ParamKind::name).collect();
        assert_eq!(names, crate::wit_enum_cases("param-kind"));
    }
}
