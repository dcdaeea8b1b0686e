//! `#[derive(EventNames)]`: an event enum's stored type names, taken from its variant
//! identifiers, so that the name the store keeps and serde's adjacent tag are one thing.
//!
//! The derive refuses any serde attribute that would make serde's tag differ from the
//! variant's identifier (`rename`, `rename_all`, `alias`, ...), and requires the
//! adjacently tagged shape (`tag = "type", content = "data"`) the codec reads.

use proc_macro::TokenStream;
use proc_macro2::{TokenStream as Tokens, TokenTree};
use quote::{format_ident, quote};
use syn::spanned::Spanned as _;
use syn::{Attribute, Data, DeriveInput, Error, Lit, parse_macro_input};

/// serde attributes that change or hide a variant's tag.
const RENAMING: [&str; 8] = ["rename", "rename_all", "alias", "untagged", "other", "skip", "skip_serializing", "skip_deserializing"];

#[proc_macro_derive(EventNames)]
pub fn derive_event_names(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input).unwrap_or_else(Error::into_compile_error).into()
}

fn expand(input: &DeriveInput) -> Result<Tokens, Error> {
    let Data::Enum(data) = &input.data else {
        return Err(Error::new(input.ident.span(), "EventNames derives only for enums (one variant per event type)"));
    };
    if !input.generics.params.is_empty() {
        return Err(Error::new(input.generics.span(), "an event enum cannot be generic"));
    }
    refuse_renames(&input.attrs)?;
    require_adjacent_tags(input)?;
    for v in &data.variants {
        refuse_renames(&v.attrs)?;
    }
    let name = &input.ident;
    let vis = &input.vis;
    let kind = format_ident!("{name}Kind");
    let variants: Vec<_> = data.variants.iter().map(|v| &v.ident).collect();
    let names: Vec<String> = variants.iter().map(|v| v.to_string()).collect();
    let kind_doc = format!("The event types of [`{name}`] as values, for naming a subset of them without string literals.");
    Ok(quote! {
        impl ::medledger_domain::EventNames for #name {
            const EVENT_TYPES: &'static [&'static str] = &[#(#names),*];
            type Kind = #kind;

            fn event_type(&self) -> &'static str {
                match self {
                    #(Self::#variants { .. } => #names,)*
                }
            }

            fn kind(&self) -> #kind {
                match self {
                    #(Self::#variants { .. } => #kind::#variants,)*
                }
            }
        }

        #[doc = #kind_doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #vis enum #kind {
            #(#variants,)*
        }

        impl ::medledger_domain::EventKind for #kind {
            fn name(self) -> &'static str {
                match self {
                    #(Self::#variants => #names,)*
                }
            }
        }
    })
}

/// The attribute's top-level words, e.g. `tag`, `=`, `"type"`, `,`, `content`, ...
fn serde_tokens(attrs: &[Attribute]) -> Result<Vec<TokenTree>, Error> {
    let mut out = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        out.extend(attr.meta.require_list()?.tokens.clone());
        out.push(TokenTree::Punct(proc_macro2::Punct::new(',', proc_macro2::Spacing::Alone)));
    }
    Ok(out)
}

fn refuse_renames(attrs: &[Attribute]) -> Result<(), Error> {
    for token in serde_tokens(attrs)? {
        if let TokenTree::Ident(ident) = &token
            && RENAMING.iter().any(|r| ident == r)
        {
            return Err(Error::new(
                ident.span(),
                format!(
                    "`serde({ident})` would make serde's tag differ from the event type name (the variant's identifier); rename the variant instead"
                ),
            ));
        }
    }
    Ok(())
}

fn require_adjacent_tags(input: &DeriveInput) -> Result<(), Error> {
    let tokens = serde_tokens(&input.attrs)?;
    let value_of = |key: &str| {
        tokens.windows(3).find_map(|w| match w {
            [TokenTree::Ident(k), TokenTree::Punct(eq), TokenTree::Literal(lit)] if k == key && eq.as_char() == '=' => {
                match Lit::new(lit.clone()) {
                    Lit::Str(s) => Some(s.value()),
                    _ => None,
                }
            }
            _ => None,
        })
    };
    if value_of("tag").as_deref() != Some("type") || value_of("content").as_deref() != Some("data") {
        return Err(Error::new(
            input.ident.span(),
            "an event enum is stored adjacently tagged: add #[serde(tag = \"type\", content = \"data\")]",
        ));
    }
    Ok(())
}
