//! `#[toolcell_sdk::tool]`: the one attribute a tool author writes.
//!
//! On a function `fn name(input: Input) -> Result<Output, E>` it generates
//! the `toolcell:tool` exports: `describe` (the name, the doc comment as the
//! description, JSON Schemas of `Input` and `Output`) and `invoke` (parse
//! the JSON input with errors naming the field, call the function, serialise
//! the output, map `E` into `tool-error`). The function stays callable, so it
//! can be unit-tested natively.

#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use quote::quote;
use syn::{Expr, ExprLit, FnArg, ItemFn, Lit, Meta, ReturnType, Type, parse_macro_input};

/// Exports a typed handler as the tool. Optional: `#[tool(name = "custom-name")]`
/// (default: the function's name with dashes).
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    match expand(attr.into(), function) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn expand(attr: proc_macro2::TokenStream, function: ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let mut name = function.sig.ident.to_string().replace('_', "-");
    if !attr.is_empty() {
        let meta: syn::MetaNameValue = syn::parse2(attr)?;
        if !meta.path.is_ident("name") {
            return Err(syn::Error::new_spanned(&meta.path, "the only option is `name = \"tool-name\"`"));
        }
        match &meta.value {
            Expr::Lit(ExprLit { lit: Lit::Str(text), .. }) => name = text.value(),
            other => return Err(syn::Error::new_spanned(other, "`name` takes a string")),
        }
    }

    let description = function
        .attrs
        .iter()
        .filter_map(|attr| match &attr.meta {
            Meta::NameValue(nv) if nv.path.is_ident("doc") => match &nv.value {
                Expr::Lit(ExprLit { lit: Lit::Str(text), .. }) => Some(text.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned();
    if description.is_empty() {
        return Err(syn::Error::new_spanned(
            &function.sig.ident,
            "document the tool with a doc comment (`/// ...`): it is the description agents choose tools by",
        ));
    }

    let inputs: Vec<&FnArg> = function.sig.inputs.iter().collect();
    let input_type: &Type = match inputs.as_slice() {
        [FnArg::Typed(arg)] => &arg.ty,
        _ => {
            return Err(syn::Error::new_spanned(
                &function.sig.inputs,
                "a tool takes exactly one argument: its input type (Deserialize + JsonSchema)",
            ));
        }
    };
    let output_type = match &function.sig.output {
        ReturnType::Type(_, ty) => result_ok_type(ty).ok_or_else(|| {
            syn::Error::new_spanned(ty, "a tool returns `Result<Output, E>` (Output: Serialize + JsonSchema)")
        })?,
        ReturnType::Default => {
            return Err(syn::Error::new_spanned(
                &function.sig,
                "a tool returns `Result<Output, E>` (Output: Serialize + JsonSchema)",
            ));
        }
    };
    let handler = &function.sig.ident;
    Ok(quote! {
        #function

        #[doc(hidden)]
        struct __ToolcellTool;

        impl ::toolcell_sdk::Guest for __ToolcellTool {
            fn describe() -> ::toolcell_sdk::ToolInfo {
                ::toolcell_sdk::__private::describe::<#input_type, #output_type>(#name, #description)
            }

            fn invoke(input: ::std::string::String) -> ::std::result::Result<::std::string::String, ::toolcell_sdk::ToolError> {
                ::toolcell_sdk::__private::invoke(&input, #handler)
            }
        }

        ::toolcell_sdk::export_tool!(__ToolcellTool);
    })
}

/// `T` of `Result<T, E>` (any path ending in `Result`).
fn result_ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.first()? {
        syn::GenericArgument::Type(ok) => Some(ok),
        _ => None,
    }
}
