//! The pprof protobuf format (`profile.proto` of github.com/google/pprof),
//! written from the field list of that specification. Readers: `go tool
//! pprof`, Pyroscope, speedscope, Grafana's Pyroscope datasource.
//!
//! Frames have names but no addresses: one `Location` and one `Function`
//! per distinct name. The output is gzip-compressed, as Go's
//! `/debug/pprof/profile` serves it; every reader accepts both.

use std::collections::HashMap;
use std::io::Write;

use prost::Message;

use super::Profile;

/// `Profile`.
#[derive(Clone, PartialEq, Message)]
pub struct PprofProfile {
    /// What each sample value measures.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Program locations.
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// Every string; index 0 is the empty string.
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// When the profile starts (unix nanoseconds).
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// How long it covers.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// What one sampling period measures.
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// The sampling period.
    #[prost(int64, tag = "12")]
    pub period: i64,
}

/// `ValueType`: indexes into the string table.
#[derive(Clone, PartialEq, Message)]
pub struct ValueType {
    /// e.g. `cpu`.
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// e.g. `nanoseconds`.
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// `Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// Locations, leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per `sample_type`.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
}

/// `Location`.
#[derive(Clone, PartialEq, Message)]
pub struct Location {
    /// Non-zero, unique.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The functions at this location (one: no inlining information).
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

/// `Line`.
#[derive(Clone, PartialEq, Message)]
pub struct Line {
    /// The function.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
}

/// `Function`.
#[derive(Clone, PartialEq, Message)]
pub struct Function {
    /// Non-zero, unique.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Name (string table index).
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// Name as the system knows it (the same here).
    #[prost(int64, tag = "3")]
    pub system_name: i64,
}

#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        let mut s = Strings::default();
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(i) = self.index.get(s) {
            return *i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// The profile as a pprof message: values are sample counts and CPU
/// nanoseconds (count × period).
pub fn to_pprof(profile: &Profile) -> PprofProfile {
    let mut strings = Strings::new();
    let mut functions: HashMap<String, u64> = HashMap::new();
    let mut out = PprofProfile {
        sample_type: vec![
            ValueType {
                r#type: strings.get("samples"),
                unit: strings.get("count"),
            },
            ValueType {
                r#type: strings.get("cpu"),
                unit: strings.get("nanoseconds"),
            },
        ],
        period_type: Some(ValueType {
            r#type: strings.get("cpu"),
            unit: strings.get("nanoseconds"),
        }),
        period: profile.period_nanos,
        time_nanos: profile.start_nanos,
        duration_nanos: profile.duration_nanos,
        ..Default::default()
    };
    for stack in &profile.stacks {
        let mut ids = Vec::with_capacity(stack.frames.len());
        for frame in stack.frames.iter().rev() {
            let next = functions.len() as u64 + 1;
            let id = *functions.entry(frame.clone()).or_insert_with(|| {
                let name = strings.get(frame);
                out.function.push(Function {
                    id: next,
                    name,
                    system_name: name,
                });
                out.location.push(Location {
                    id: next,
                    line: vec![Line { function_id: next }],
                });
                next
            });
            ids.push(id);
        }
        let n = i64::try_from(stack.value).unwrap_or(i64::MAX);
        out.sample.push(Sample {
            location_id: ids,
            value: vec![n, n.saturating_mul(profile.period_nanos)],
        });
    }
    out.string_table = strings.table;
    out
}

/// The gzip-compressed protobuf encoding of [`to_pprof`].
pub fn encode(profile: &Profile) -> Vec<u8> {
    let raw = to_pprof(profile).encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(&raw);
    gz.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::Stack;

    #[test]
    fn leaf_first_locations_shared_functions() {
        let profile = Profile::from_stacks(
            [
                Stack {
                    frames: vec!["app".into(), "main".into(), "hot".into()],
                    value: 4,
                },
                Stack {
                    frames: vec!["app".into(), "main".into()],
                    value: 1,
                },
            ],
            1_000,
            5,
            10,
        );
        let p = to_pprof(&profile);
        assert_eq!(p.function.len(), 3);
        let name = |loc: u64| {
            let f = &p.function[(loc - 1) as usize];
            p.string_table[f.name as usize].clone()
        };
        let first = &p.sample[0];
        assert_eq!(first.value, [1, 1_000]);
        assert_eq!(name(first.location_id[0]), "main");
        let second = &p.sample[1];
        assert_eq!(second.value, [4, 4_000]);
        let names: Vec<String> = second.location_id.iter().map(|l| name(*l)).collect();
        assert_eq!(names, ["hot", "main", "app"]);
        assert_eq!(p.string_table[0], "");
        let decoded = PprofProfile::decode(to_pprof(&profile).encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, p);
    }
}
