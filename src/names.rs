//! Enums whose values have names, written once: [`named_enum!`] gives an enum its list of
//! values and their names (`ALL`, `NAMES`, `name`, `from_name`), `Display`, and serde by name,
//! so that the command line's possible values, a config line's "did you mean" and `run.json`
//! all read the same list.
//!
//! ```ignore
//! named_enum! {
//!     /// Which learning-rate schedule a run uses.
//!     pub enum ScheduleChoice {
//!         /// The base rate throughout.
//!         Constant = "constant",
//!         /// The rate times `gamma` every `step_size` epochs.
//!         Step = "step",
//!     }
//!     default Constant
//! }
//! ```
//!
//! Each value's doc comment is also its help on the command line (`--schedule <SCHEDULE>`
//! lists them). Reading accepts a name in any case, so that run folders written when the
//! names were capitalised (`"Sgd"`, `"He"`) still read.

/// See the module documentation.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Enum:ident {
            $( $(#[doc = $doc:literal])* $Variant:ident = $name:literal, )+
        }
        $(default $Default:ident)?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $Enum {
            $( $(#[doc = $doc])* $Variant, )+
        }

        impl $Enum {
            /// Every value, in the order the help lists them.
            pub const ALL: &'static [$Enum] = &[$($Enum::$Variant),+];
            /// Every value's name, in the order of [`Self::ALL`].
            pub const NAMES: &'static [&'static str] = &[$($name),+];
            /// Every value's name with its help (its doc comment).
            pub const CHOICES: &'static [(&'static str, &'static str)] =
                &[$(($name, concat!($($doc),*))),+];

            /// The name the command line, config files and `run.json` use.
            pub fn name(self) -> &'static str {
                match self {
                    $($Enum::$Variant => $name,)+
                }
            }

            /// The value called `name`, if there is one.
            pub fn from_name(name: &str) -> Option<$Enum> {
                Self::ALL.iter().copied().find(|v| v.name() == name)
            }
        }

        $(impl Default for $Enum {
            fn default() -> $Enum {
                $Enum::$Default
            }
        })?

        impl std::fmt::Display for $Enum {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl serde::Serialize for $Enum {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $Enum {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<$Enum, D::Error> {
                let s = String::deserialize(d)?;
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name().eq_ignore_ascii_case(&s))
                    .ok_or_else(|| serde::de::Error::unknown_variant(&s, Self::NAMES))
            }
        }
    };
}

pub(crate) use named_enum;

#[cfg(test)]
mod tests {
    named_enum! {
        /// A test enum.
        pub enum Colour {
            /// Like the sky.
            Blue = "blue",
            /// Like
            /// grass.
            Green = "green",
        }
        default Green
    }

    #[test]
    fn names_help_serde_and_default_come_from_the_one_list() {
        assert_eq!(Colour::NAMES, ["blue", "green"]);
        assert_eq!(Colour::from_name("green"), Some(Colour::Green));
        assert_eq!(Colour::from_name("Green"), None);
        assert_eq!(Colour::CHOICES[1].1.trim(), "Like grass.");
        assert_eq!(Colour::default(), Colour::Green);
        assert_eq!(serde_json::to_string(&Colour::Blue).unwrap(), r#""blue""#);
        // Old files wrote capitalised names.
        let c: Colour = serde_json::from_str(r#""Blue""#).unwrap();
        assert_eq!(c, Colour::Blue);
        let err = serde_json::from_str::<Colour>(r#""red""#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `red`"), "{err}");
    }
}
