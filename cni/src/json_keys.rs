//! Config keys matched to struct fields the way Go's `encoding/json` does.
//!
//! The Go plugins decode their config with `json.Unmarshal`, which assigns
//! each key of a JSON object to a struct field: the field whose JSON name
//! is exactly the key, else the first field (in declaration order) whose
//! name equals the key under Unicode simple case folding. So `IsGateway`,
//! `isgateway` and `ISGATEWAY` all set the bridge's `isGateway`, at every
//! nesting level (`IPAM.Ranges[0][0].RangeStart` too). The preference for
//! an exact match is per key, among fields (a key `FOO` goes to a field
//! named `FOO` rather than to one named `foo`); when several keys land on
//! the same field, exact or folded, the last one in the object wins (so
//! `{"isGateway":false,"IsGateway":true}` is true, and the reverse false),
//! duplicates of the very same key included. Map keys
//! (`capabilities`, `runtimeConfig` passthrough, `extra`) are data, not
//! field names: they are never folded.
//!
//! serde matches names exactly, so [`from_slice`] and [`from_value`] read
//! the JSON into an ordered tree that keeps every key (duplicates too) and
//! hand it to the target type through a `Deserializer` whose
//! `deserialize_struct` renames each key to the field Go would pick
//! ([`field_for`]) before the derived visitor sees it; every nested value
//! is deserialized by the same adapter, so nested structs get the same
//! treatment. Everything else behaves as `serde_json::Value`'s
//! deserializer does. Keys that match no field reach the visitor unchanged
//! (ignored, or rejected by `deny_unknown_fields`, as before).
//!
//! Hand-written because no maintained crate does this: `serde-aux`'s
//! `deserialize_struct_case_insensitive` lowercases the keys of one level
//! (so it breaks `camelCase` names, is not Go's folding, has no exact-match
//! preference and no duplicate rule), and alias-generating macros only add
//! a few fixed spellings (`IPMASQ` or `isgateway` would still be missed).
//!
//! # Where this still differs from Go
//!
//! - Structs that use `#[serde(flatten)]` are deserialized by serde
//!   through `deserialize_map`, which carries no field names, and their
//!   subtree is buffered by serde: such a struct must fold its own keys
//!   (as [`crate::NetConf`] does, with [`field_for`]).
//! - A field given twice is taken whole from its last occurrence. Go
//!   decodes a struct- or map-typed value again into the same struct or map,
//!   so `{"ipam":{"a":1},"IPAM":{"b":2}}` keeps both `a` and `b` in Go and
//!   only `b` here.
//! - `null` for a struct field is treated as an absent key (the field gets
//!   its default), which is what Go does for a field that was not set
//!   before; when an earlier duplicate did set it, Go keeps that value for
//!   non-pointer types and rcni does not.
//! - Folding beyond ASCII: a key folds onto an ASCII field name exactly as
//!   in Go (including `K` U+212A KELVIN SIGN for `k` and `ſ` U+017F LONG S
//!   for `s`); non-ASCII letters of a non-ASCII field name are compared
//!   exactly (no rcni struct has such a name).
//! - Stricter: a key or string that is not valid UTF-8 is a decode error
//!   (Go substitutes U+FFFD). More lenient: as with plain serde_json, a
//!   struct may also be written as a JSON array of its fields (Go refuses).
//! - serde aliases count as extra field names (rcni's config structs have
//!   none); two keys landing on two names of the same field are a
//!   duplicate-field error rather than last-wins.

use serde::de::value::{StrDeserializer, StringDeserializer};
use serde::de::{
    DeserializeOwned, DeserializeSeed, EnumAccess, Error as _, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};
use serde::{Deserialize, Deserializer};
use serde_json::{Error, Map, Value};
use std::borrow::Cow;
use std::fmt;

/// Parses JSON bytes into `T`, matching object keys to struct fields as
/// Go's `encoding/json` does (see the module doc).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let node: Node<'_> = serde_json::from_slice(bytes)?;
    T::deserialize(node)
}

/// Deserializes `T` from an already parsed value, with Go's key matching.
/// (A `Value` has already merged exact duplicate keys, last value first
/// position; keys differing in case are still all there.)
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, Error> {
    T::deserialize(Node::from(value))
}

/// The field Go's `encoding/json` assigns `key` to, among a struct's JSON
/// field names in declaration order: the one equal to `key`, else the first
/// one equal under case folding ([`equal_fold`]); `None` when no field
/// matches (an unknown key).
pub fn field_for(key: &str, fields: &[&'static str]) -> Option<&'static str> {
    field_index(key, fields).and_then(|i| fields.get(i).copied())
}

/// The value of the key Go would assign to a struct field named `field`,
/// when that is the struct's only field matching such keys (as `ipam.type`
/// in Go's `types.IPAM`): the last key, in map order, equal to `field`
/// exactly or under case folding.
pub fn get<'a>(map: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    map.iter()
        .rev()
        .find(|(k, _)| k.as_str() == field || equal_fold(k, field))
        .map(|(_, v)| v)
}

/// Go's `strings.EqualFold` / `encoding/json`'s `foldName` comparison for a
/// key against a field name: equal when every character folds to the same
/// one. ASCII letters fold to upper case; U+212A KELVIN SIGN folds with `k`
/// and U+017F LATIN SMALL LETTER LONG S with `s`, the only non-ASCII
/// characters whose simple case folding orbit holds an ASCII letter; any
/// other character must match exactly (exact for ASCII field names, which
/// all of rcni's are; stricter than Go for a non-ASCII name).
pub fn equal_fold(key: &str, name: &str) -> bool {
    if key.is_ascii() {
        return key.eq_ignore_ascii_case(name);
    }
    let mut k = key.chars();
    let mut n = name.chars();
    loop {
        match (k.next(), n.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if fold_char(a) == fold_char(b) => {}
            _ => return false,
        }
    }
}

fn fold_char(c: char) -> char {
    match c {
        'a'..='z' => c.to_ascii_uppercase(),
        '\u{212A}' => 'K',
        '\u{017F}' => 'S',
        _ => c,
    }
}

fn field_index(key: &str, fields: &[&'static str]) -> Option<usize> {
    fields
        .iter()
        .position(|f| *f == key)
        .or_else(|| fields.iter().position(|f| equal_fold(key, f)))
}

/// A parsed JSON document that keeps every object key, in order,
/// duplicates included (a `serde_json::Value` keeps one per exact key).
/// Strings without escapes borrow from the input: most keys and ignored
/// values then cost no allocation.
#[derive(Debug, Clone, PartialEq)]
enum Node<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl Node<'_> {
    fn unexpected(&self) -> Unexpected<'_> {
        match self {
            Node::Null => Unexpected::Unit,
            Node::Bool(b) => Unexpected::Bool(*b),
            Node::U64(n) => Unexpected::Unsigned(*n),
            Node::I64(n) => Unexpected::Signed(*n),
            Node::F64(n) => Unexpected::Float(*n),
            Node::Str(s) => Unexpected::Str(s),
            Node::Array(_) => Unexpected::Seq,
            Node::Object(_) => Unexpected::Map,
        }
    }
}

impl<'a> From<&'a Value> for Node<'a> {
    fn from(v: &'a Value) -> Node<'a> {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Node::U64(u),
                (None, Some(i), _) => Node::I64(i),
                (None, None, Some(f)) => Node::F64(f),
                (None, None, None) => Node::Null,
            },
            Value::String(s) => Node::Str(Cow::Borrowed(s)),
            Value::Array(a) => Node::Array(a.iter().map(Node::from).collect()),
            Value::Object(o) => Node::Object(
                o.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Node::from(v)))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node<'de>, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node<'de>, E> {
        Ok(Node::I64(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node<'de>, E> {
        Ok(Node::U64(n))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Node<'de>, E> {
        Ok(Node::F64(n))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(s.to_string())))
    }

    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value()?;
            pairs.push((key, value));
        }
        Ok(Node::Object(pairs))
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s))
    }
}

/// Hands a string to a visitor, moving it when it is owned.
fn visit_cow<'de, V: Visitor<'de>>(s: Cow<'_, str>, visitor: V) -> Result<V::Value, Error> {
    match s {
        Cow::Borrowed(s) => visitor.visit_str(s),
        Cow::Owned(s) => visitor.visit_string(s),
    }
}

/// A string as a deserializer (an object key, an enum variant).
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserializer<'de> for CowStr<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visit_cow(self.0, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Cow::Borrowed(s) => StrDeserializer::<Error>::new(s).deserialize_enum(name, variants, visitor),
            Cow::Owned(s) => StringDeserializer::<Error>::new(s).deserialize_enum(name, variants, visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

impl<'de> Deserializer<'de> for Node<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Null => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(b),
            Node::U64(n) => visitor.visit_u64(n),
            Node::I64(n) => visitor.visit_i64(n),
            Node::F64(n) => visitor.visit_f64(n),
            Node::Str(s) => visit_cow(s, visitor),
            Node::Array(items) => visit_array(items, visitor),
            Node::Object(pairs) => visitor.visit_map(ObjectAccess {
                pairs: pairs.into_iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Null => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Null => visitor.visit_unit(),
            other => Err(Error::invalid_type(other.unexpected(), &visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Node::Object(pairs) => visit_struct(pairs, fields, visitor),
            // As serde_json: a struct may also be written as an array of its fields.
            Node::Array(items) => visit_array(items, visitor),
            other => Err(Error::invalid_type(other.unexpected(), &visitor)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Node::Str(variant) => visitor.visit_enum(Enum { variant, value: None }),
            Node::Object(mut pairs) if pairs.len() == 1 => match pairs.pop() {
                Some((variant, value)) => visitor.visit_enum(Enum {
                    variant,
                    value: Some(value),
                }),
                None => Err(Error::invalid_value(Unexpected::Map, &"a map with a single key")),
            },
            Node::Object(_) => Err(Error::invalid_value(Unexpected::Map, &"a map with a single key")),
            other => Err(Error::invalid_type(other.unexpected(), &"a string or a map")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        drop(self);
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf seq tuple tuple_struct map identifier
    }
}

fn visit_array<'de, V: Visitor<'de>>(items: Vec<Node<'_>>, visitor: V) -> Result<V::Value, Error> {
    let len = items.len();
    let mut seq = ArrayAccess {
        items: items.into_iter(),
    };
    let value = visitor.visit_seq(&mut seq)?;
    if seq.items.len() == 0 {
        Ok(value)
    } else {
        Err(Error::invalid_length(len, &"fewer elements in array"))
    }
}

/// A struct's object: each key renamed to the field Go assigns it to, one
/// entry per field (its last occurrence), `null` fields left out; keys that
/// match no field stay as they are, in place.
fn visit_struct<'de, V: Visitor<'de>>(
    pairs: Vec<(Cow<'_, str>, Node<'_>)>,
    fields: &'static [&'static str],
    visitor: V,
) -> Result<V::Value, Error> {
    let mut entries: Vec<(Key<'_>, Node<'_>)> = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        match field_for(&key, fields) {
            Some(field) => {
                let seen = entries
                    .iter_mut()
                    .find(|(k, _)| matches!(k, Key::Field(f) if *f == field));
                match seen {
                    Some(entry) => entry.1 = value,
                    None => entries.push((Key::Field(field), value)),
                }
            }
            None => entries.push((Key::Other(key), value)),
        }
    }
    entries.retain(|(k, v)| !(matches!(k, Key::Field(_)) && matches!(v, Node::Null)));
    visitor.visit_map(StructAccess {
        entries: entries.into_iter(),
        value: None,
    })
}

enum Key<'a> {
    /// A struct field, by the name serde knows it by.
    Field(&'static str),
    /// A key no field matches, as written.
    Other(Cow<'a, str>),
}

struct ArrayAccess<'a> {
    items: std::vec::IntoIter<Node<'a>>,
}

impl<'de> SeqAccess<'de> for ArrayAccess<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some(item) => seed.deserialize(item).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// A plain object (a map, a `Value`): keys are data and stay as written.
struct ObjectAccess<'a> {
    pairs: std::vec::IntoIter<(Cow<'a, str>, Node<'a>)>,
    value: Option<Node<'a>>,
}

impl<'de> MapAccess<'de> for ObjectAccess<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        match self.pairs.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(CowStr(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(value),
            None => Err(Error::custom("value is missing")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.pairs.len())
    }
}

struct StructAccess<'a> {
    entries: std::vec::IntoIter<(Key<'a>, Node<'a>)>,
    value: Option<Node<'a>>,
}

impl<'de> MapAccess<'de> for StructAccess<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                match key {
                    Key::Field(name) => seed.deserialize(StrDeserializer::<Error>::new(name)).map(Some),
                    Key::Other(key) => seed.deserialize(CowStr(key)).map(Some),
                }
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(value),
            None => Err(Error::custom("value is missing")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct Enum<'a> {
    variant: Cow<'a, str>,
    value: Option<Node<'a>>,
}

impl<'de, 'a> EnumAccess<'de> for Enum<'a> {
    type Error = Error;
    type Variant = Variant<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Variant<'a>), Error> {
        let variant = seed.deserialize(CowStr(self.variant))?;
        Ok((variant, Variant(self.value)))
    }
}

struct Variant<'a>(Option<Node<'a>>);

impl<'de> VariantAccess<'de> for Variant<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.0 {
            None | Some(Node::Null) => Ok(()),
            Some(other) => Err(Error::invalid_type(other.unexpected(), &"unit variant")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        match self.0 {
            Some(value) => seed.deserialize(value),
            None => Err(Error::invalid_type(Unexpected::UnitVariant, &"newtype variant")),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Some(Node::Array(items)) => visit_array(items, visitor),
            Some(other) => Err(Error::invalid_type(other.unexpected(), &"tuple variant")),
            None => Err(Error::invalid_type(Unexpected::UnitVariant, &"tuple variant")),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Some(Node::Object(pairs)) => visit_struct(pairs, fields, visitor),
            Some(other) => Err(Error::invalid_type(other.unexpected(), &"struct variant")),
            None => Err(Error::invalid_type(Unexpected::UnitVariant, &"struct variant")),
        }
    }
}

#[cfg(test)]
mod tests;
