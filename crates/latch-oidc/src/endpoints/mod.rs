pub mod authorize;
pub mod discovery;
pub mod logout;
pub mod revoke;
pub mod token;
pub mod userinfo;
