//! `phantommesh status`: owner: fill in.
pub fn run(url: &str, json: bool, token: Option<String>) -> i32 {
    let _ = (url, json, token);
    todo!()
}
