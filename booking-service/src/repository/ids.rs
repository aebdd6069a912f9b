//! The Diesel mapping of the domain's typed ids: each is stored as the `uuid` column
//! it wraps, so binds, query-builder expressions and rows carry the typed id itself.
//! (The domain stays free of Diesel: the mapping lives here, as `#[derive(AsExpression)]`
//! would generate it, with the `Bound` expression that derive uses.)

use crate::domain::{AppointmentId, ClinicId, DoctorId, ReviewId, SlotId, UserId};
use diesel::deserialize::{self, FromSql};
use diesel::expression::AsExpression;
use diesel::internal::derives::as_expression::Bound;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{Nullable, Uuid as SqlUuid};
use uuid::Uuid;

macro_rules! uuid_column {
    ($($id:ident),+) => {$(
        impl ToSql<SqlUuid, Pg> for $id {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <Uuid as ToSql<SqlUuid, Pg>>::to_sql(&self.0, out)
            }
        }

        impl AsExpression<SqlUuid> for $id {
            type Expression = Bound<SqlUuid, Self>;
            fn as_expression(self) -> Self::Expression {
                Bound::new(self)
            }
        }

        impl<'a> AsExpression<SqlUuid> for &'a $id {
            type Expression = Bound<SqlUuid, Self>;
            fn as_expression(self) -> Self::Expression {
                Bound::new(self)
            }
        }

        impl AsExpression<Nullable<SqlUuid>> for $id {
            type Expression = Bound<Nullable<SqlUuid>, Self>;
            fn as_expression(self) -> Self::Expression {
                Bound::new(self)
            }
        }

        impl<'a> AsExpression<Nullable<SqlUuid>> for &'a $id {
            type Expression = Bound<Nullable<SqlUuid>, Self>;
            fn as_expression(self) -> Self::Expression {
                Bound::new(self)
            }
        }

        impl ToSql<Nullable<SqlUuid>, Pg> for $id {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <Uuid as ToSql<SqlUuid, Pg>>::to_sql(&self.0, out)
            }
        }

        impl FromSql<SqlUuid, Pg> for $id {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                <Uuid as FromSql<SqlUuid, Pg>>::from_sql(bytes).map($id)
            }
        }
    )+};
}

uuid_column!(AppointmentId, ClinicId, DoctorId, ReviewId, SlotId, UserId);
