//! A share's policy as the forms take it: the inputs as typed ([`PolicyInput`]), the one path
//! that checks them into [`CreateShareFields`] by the same rules the API applies, and the
//! component that draws them for a new share or a mirror.

use std::rc::Rc;

use veilshare_shared::{CreateShareFields, form};
use wasm_bindgen::JsCast;
use yew::prelude::*;

/// An edit of a form's inputs, applied to their latest value when the reducer runs.
pub struct Edit<T>(Box<dyn FnOnce(&mut T)>);

impl<T> Edit<T> {
    pub fn new(apply: impl FnOnce(&mut T) + 'static) -> Self {
        Self(Box::new(apply))
    }
}

/// A form's inputs, kept in a reducer (`use_reducer(|| Inputs(…))`): each [`Edit`] applies to
/// the latest value, whenever Yew draws the form again (a `use_state` handle captured when the
/// form was drawn would apply two edits made before a redraw to the same old value).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Inputs<T>(pub T);

impl<T: Clone + 'static> Reducible for Inputs<T> {
    type Action = Edit<T>;

    fn reduce(self: Rc<Self>, edit: Edit<T>) -> Rc<Self> {
        let mut next = self.0.clone();
        (edit.0)(&mut next);
        Rc::new(Self(next))
    }
}

/// A callback for a text or number input's `input` event: `set` gets its text at every
/// keystroke, so the state always holds what the field shows. (Updated only on `change`, the
/// state would lag the field until it loses focus, and any redraw meanwhile — the app redraws
/// every second for its countdowns — would put the old value back into the field.)
pub fn on_input<T: 'static>(
    target: &Callback<Edit<T>>,
    set: fn(&mut T, String),
) -> Callback<InputEvent> {
    let target = target.clone();
    Callback::from(move |event: InputEvent| {
        let text = text_of(&event);
        target.emit(Edit::new(move |value| set(value, text)));
    })
}

/// A callback for a select: `set` gets its value when it changes.
pub fn on_text<T: 'static>(target: &Callback<Edit<T>>, set: fn(&mut T, String)) -> Callback<Event> {
    let target = target.clone();
    Callback::from(move |event: Event| {
        let text = text_of(&event);
        target.emit(Edit::new(move |value| set(value, text)));
    })
}

/// A callback for a checkbox: `set` gets whether it is checked when it changes.
pub fn on_check<T: 'static>(target: &Callback<Edit<T>>, set: fn(&mut T, bool)) -> Callback<Event> {
    let target = target.clone();
    Callback::from(move |event: Event| {
        let checked = checked_of(&event);
        target.emit(Edit::new(move |value| set(value, checked)));
    })
}

/// The dispatcher of a form's [`Inputs`] as a callback.
pub fn editor<T: Clone + 'static>(inputs: &UseReducerHandle<Inputs<T>>) -> Callback<Edit<T>> {
    let inputs = inputs.clone();
    Callback::from(move |edit| inputs.dispatch(edit))
}

/// The expiry choices: seconds (empty: never), and `custom` for a number and a unit.
const EXPIRY_PRESETS: [(&str, &str); 6] = [
    ("600", "10 minutes"),
    ("3600", "1 hour"),
    ("86400", "1 day"),
    ("604800", "7 days"),
    ("", "never"),
    ("custom", "custom…"),
];

/// The units of a custom expiry, in seconds.
const CUSTOM_UNITS: [(&str, &str); 3] = [("60", "minutes"), ("3600", "hours"), ("86400", "days")];

/// The policy inputs as the user left them, unchecked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyInput {
    /// Downloads allowed; empty for no limit.
    pub max_downloads: String,
    /// A preset's seconds, empty for never, or `custom`.
    pub expiry: String,
    /// The number of a custom expiry.
    pub custom_amount: String,
    /// The unit of a custom expiry, in seconds.
    pub custom_unit: String,
    /// The label shown to recipients.
    pub label: String,
    /// Also share over iroh.
    pub direct: bool,
    /// Only recipients with the key.
    pub restricted: bool,
    /// Named recipients, separated by commas (each gets a link and key of their own).
    pub recipients: String,
}

impl PolicyInput {
    /// A new share's defaults: one download, one day.
    pub fn new_share() -> Self {
        Self {
            max_downloads: "1".into(),
            expiry: "86400".into(),
            custom_amount: "2".into(),
            custom_unit: "3600".into(),
            label: String::new(),
            direct: false,
            restricted: false,
            recipients: String::new(),
        }
    }

    /// A mirror's defaults: no download limit, seven days.
    pub fn mirror() -> Self {
        Self {
            max_downloads: String::new(),
            expiry: "604800".into(),
            ..Self::new_share()
        }
    }

    /// The checked fields, or what is wrong in words for the user. Every text goes through
    /// [`CreateShareFields::set`], the rules the API itself applies.
    pub fn fields(&self) -> Result<CreateShareFields, String> {
        let expires_in = match self.expiry.as_str() {
            "custom" => match self.custom_amount.trim().parse::<u64>() {
                Ok(amount) if amount > 0 => {
                    let unit = self.custom_unit.parse::<u64>().unwrap_or(3600);
                    amount.saturating_mul(unit).to_string()
                }
                _ => return Err("the custom expiry must be a whole number above 0".into()),
            },
            preset => preset.to_owned(),
        };
        let mut fields = CreateShareFields::default();
        fields.set(form::MAX_DOWNLOADS, &self.max_downloads)?;
        fields.set(form::EXPIRES_IN_SECS, &expires_in)?;
        fields.set(form::LABEL, &self.label)?;
        fields.set(form::DIRECT, &self.direct.to_string())?;
        fields.set(form::RESTRICTED, &self.restricted.to_string())?;
        if self.restricted {
            for name in self.recipients.split(',').filter(|n| !n.trim().is_empty()) {
                fields.set(form::RECIPIENT, name)?;
            }
        }
        Ok(fields)
    }
}

/// Which form the policy belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyFor {
    /// A new share: custom expiry, label, direct; the key requirement when Tor is on.
    Share { tor_on: bool },
    /// A mirror: limit, preset expiry, direct. Its ids start with `mirror-`.
    Mirror,
}

#[derive(Properties, PartialEq)]
pub struct PolicyFieldsProps {
    pub value: PolicyInput,
    pub on_edit: Callback<Edit<PolicyInput>>,
    pub form: PolicyFor,
}

/// The policy inputs of a form; every change goes up as an [`Edit`] of the form's inputs.
#[component]
pub fn PolicyFields(props: &PolicyFieldsProps) -> Html {
    let value = &props.value;
    let typed = |set: fn(&mut PolicyInput, String)| on_input(&props.on_edit, set);
    let text = |set: fn(&mut PolicyInput, String)| on_text(&props.on_edit, set);
    let check = |set: fn(&mut PolicyInput, bool)| on_check(&props.on_edit, set);
    let (prefix, custom) = match props.form {
        PolicyFor::Share { .. } => ("", true),
        PolicyFor::Mirror => ("mirror-", false),
    };
    let (max_id, expiry_id, direct_id) = (
        format!("{prefix}max"),
        format!("{prefix}expiry"),
        format!("{prefix}direct"),
    );
    html! {
        <>
            <label for={max_id.clone()}>{ "Downloads allowed" }
                <input id={max_id} type="number" min="1" placeholder="unlimited"
                       value={value.max_downloads.clone()}
                       oninput={typed(|p, t| p.max_downloads = t)} />
            </label>
            <label for={expiry_id.clone()}>{ "Expires after" }
                <select id={expiry_id} onchange={text(|p, t| p.expiry = t)}>
                    { for EXPIRY_PRESETS.iter().filter(|(v, _)| custom || *v != "custom").map(|(preset, text)| html! {
                        <option value={*preset} selected={value.expiry == *preset}>{ *text }</option>
                    }) }
                </select>
            </label>
            if custom && value.expiry == "custom" {
                <label for="custom">{ "Custom expiry" }
                    <span class="row">
                        <input id="custom" type="number" min="1" value={value.custom_amount.clone()}
                               oninput={typed(|p, t| p.custom_amount = t)} />
                        <select aria-label="Unit" onchange={text(|p, t| p.custom_unit = t)}>
                            { for CUSTOM_UNITS.iter().map(|(unit, text)| html! {
                                <option value={*unit} selected={value.custom_unit == *unit}>{ *text }</option>
                            }) }
                        </select>
                    </span>
                </label>
            }
            if let PolicyFor::Share { tor_on } = props.form {
                <label for="label">{ "Label (shown to recipients)" }
                    <input id="label" type="text" maxlength="200" value={value.label.clone()}
                           oninput={typed(|p, t| p.label = t)} />
                </label>
                if tor_on {
                    <label class="check" for="restricted">
                        <input id="restricted" type="checkbox" checked={value.restricted}
                               onchange={check(|p, c| p.restricted = c)} />
                        { "Require a key: the recipient needs the link and a key (Tor Browser asks for it)" }
                    </label>
                    if value.restricted {
                        <label class="wide" for="recipients">{ "Recipients (optional, separated by commas): each gets a link and key of their own, and can be revoked alone" }
                            <input id="recipients" type="text" placeholder="alice, bob"
                                   value={value.recipients.clone()}
                                   oninput={typed(|p, t| p.recipients = t)} />
                        </label>
                    }
                }
            }
            <label class="check" for={direct_id.clone()}>
                <input id={direct_id} type="checkbox" checked={value.direct}
                       onchange={check(|p, c| p.direct = c)} />
                if props.form == PolicyFor::Mirror {
                    { "Also share the mirror directly (" }<strong>{ "reveals your IP address" }</strong>{ ")" }
                } else {
                    { "Also share directly (faster, " }<strong>{ "reveals your IP address" }</strong>{ " to the recipient)" }
                }
            </label>
        </>
    }
}

/// The text of the input, text area or select an event came from.
pub fn text_of(event: &Event) -> String {
    let Some(target) = event.target() else {
        return String::new();
    };
    if let Some(input) = target.dyn_ref::<web_sys::HtmlInputElement>() {
        return input.value();
    }
    if let Some(area) = target.dyn_ref::<web_sys::HtmlTextAreaElement>() {
        return area.value();
    }
    target
        .dyn_ref::<web_sys::HtmlSelectElement>()
        .map(web_sys::HtmlSelectElement::value)
        .unwrap_or_default()
}

/// Whether the checkbox an event came from is checked.
fn checked_of(event: &Event) -> bool {
    event
        .target()
        .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        .is_some_and(|input| input.checked())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inputs_are_checked_by_the_api_rules() {
        let fields = PolicyInput::new_share()
            .fields()
            .expect("the defaults are valid");
        assert_eq!(
            (fields.max_downloads, fields.expires_in_secs),
            (Some(1), Some(86_400))
        );
        let custom = PolicyInput {
            expiry: "custom".into(),
            custom_amount: "3".into(),
            custom_unit: "60".into(),
            max_downloads: String::new(),
            ..PolicyInput::new_share()
        };
        let fields = custom.fields().expect("valid");
        assert_eq!(
            (fields.max_downloads, fields.expires_in_secs),
            (None, Some(180))
        );
        let never = PolicyInput {
            expiry: String::new(),
            ..PolicyInput::mirror()
        };
        assert_eq!(never.fields().expect("valid").expires_in_secs, None);
        for bad in [
            PolicyInput {
                max_downloads: "0".into(),
                ..PolicyInput::new_share()
            },
            PolicyInput {
                expiry: "custom".into(),
                custom_amount: "soon".into(),
                ..PolicyInput::new_share()
            },
            PolicyInput {
                expiry: "custom".into(),
                custom_amount: "400".into(),
                custom_unit: "86400".into(),
                ..PolicyInput::new_share()
            },
            PolicyInput {
                label: "x".repeat(201),
                ..PolicyInput::new_share()
            },
            PolicyInput {
                direct: true,
                restricted: true,
                ..PolicyInput::new_share()
            },
        ] {
            assert!(bad.fields().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn named_recipients_are_read_only_for_a_share_that_requires_a_key() {
        let named = PolicyInput {
            restricted: true,
            recipients: " alice, bob ,, ".into(),
            ..PolicyInput::new_share()
        };
        assert_eq!(named.fields().expect("valid").recipients, ["alice", "bob"]);
        let open = PolicyInput {
            restricted: false,
            ..named.clone()
        };
        assert!(open.fields().expect("valid").recipients.is_empty());
        let twice = PolicyInput {
            recipients: "alice, Alice".into(),
            ..named
        };
        assert!(twice.fields().is_err());
    }
}
