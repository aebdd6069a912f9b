//! Hand-written SQL that is still a prepared statement.
//!
//! Diesel's `sql_query` is never cached: every call parses and plans its text again.
//! [`Sql`] carries the same kind of text (with `$1`, `$2`… placeholders) and typed
//! binds, but lets Diesel's statement cache key it by its text, so each connection
//! prepares it once and afterwards only sends the values. Used for the statements the
//! query builder cannot express, such as one statement of several data-modifying CTEs.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::{PgConnection, QueryResult, RunQueryDsl};
use std::marker::PhantomData;

/// A statement: text with `$n` placeholders (in any order, repeatable) and its binds.
pub struct Sql {
    text: &'static str,
    binds: Vec<Box<dyn Bind>>,
}

impl Sql {
    pub fn new(text: &'static str) -> Self {
        Self {
            text,
            binds: Vec::new(),
        }
    }

    /// The next bind: `$1` for the first call, `$2` for the second…
    pub fn bind<ST, V>(mut self, value: V) -> Self
    where
        Pg: HasSqlType<ST>,
        V: ToSql<ST, Pg> + Send + 'static,
        ST: 'static,
    {
        self.binds.push(Box::new(Typed::<ST, V> {
            value,
            _type: PhantomData,
        }));
        self
    }
}

trait Bind: Send {
    fn walk<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

struct Typed<ST, V> {
    value: V,
    _type: PhantomData<fn() -> ST>,
}

impl<ST, V> Bind for Typed<ST, V>
where
    Pg: HasSqlType<ST>,
    V: ToSql<ST, Pg> + Send,
{
    fn walk<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, V>(&self.value)
    }
}

impl QueryFragment<Pg> for Sql {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Diesel numbers the binds it is given in order, so each `$n` of the text is
        // replaced by a push of bind n (a repeated `$n` is bound again).
        let mut rest = self.text;
        while let Some(at) = rest.find('$') {
            let (before, from_dollar) = rest.split_at(at);
            out.push_sql(before);
            let after = from_dollar.get(1..).unwrap_or_default();
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let (number, tail) = after.split_at(digits);
            let bind = number
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| self.binds.get(i))
                .ok_or_else(|| {
                    diesel::result::Error::QueryBuilderError(
                        format!("no bind for `${number}` in {:?}", self.text).into(),
                    )
                })?;
            bind.walk(out.reborrow())?;
            rest = tail;
        }
        out.push_sql(rest);
        Ok(())
    }
}

// No static query id: Diesel's cache then keys the statement by its SQL text and bind
// types, and (unlike `sql_query`) nothing marks it as unsafe to cache.
impl QueryId for Sql {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Sql {
    type SqlType = Untyped;
}

impl RunQueryDsl<PgConnection> for Sql {}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::{Integer, Text};

    #[test]
    fn placeholders_become_binds_in_order() {
        let q = Sql::new("SELECT $2::int, $1::text, $2::int")
            .bind::<Text, _>("a".to_owned())
            .bind::<Integer, _>(7);
        let sql = diesel::debug_query::<Pg, _>(&q).to_string();
        assert!(
            sql.starts_with("SELECT $1::int, $2::text, $3::int"),
            "{sql}"
        );
        assert!(sql.contains(r#"[7, "a", 7]"#), "{sql}");
    }

    #[test]
    fn a_placeholder_without_a_bind_is_an_error() {
        let q = Sql::new("SELECT $1, $2").bind::<Integer, _>(1);
        let mut builder = diesel::pg::PgQueryBuilder::default();
        assert!(q.to_sql(&mut builder, &Pg).is_err());
    }
}
