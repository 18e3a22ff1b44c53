//! The PostgreSQL wire protocol (simple and extended query), for `psql` and
//! Grafana's PostgreSQL datasource, on the query engine's session.
//!
//! `datafusion-postgres` does the protocol and the `pg_catalog` tables
//! `psql`'s `\d` and Grafana read; Sightline adds a read-only guard in front
//! of it: anything but queries, `EXPLAIN`, `SHOW`, `SET`, transactions and
//! cursors is refused with SQLSTATE 25006 (read-only transaction).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::{ClientInfo, ConnectionManager, PgWireServerHandlers};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::{DfSessionService, QueryHook};
use tokio::net::TcpListener;

use crate::engine::QueryEngine;
use crate::error::QueryError;

/// Refuses statements that would change anything.
#[derive(Debug)]
pub struct ReadOnly;

/// Whether a statement only reads.
pub fn is_read_only(s: &Statement) -> bool {
    matches!(
        s,
        Statement::Query(_)
            | Statement::Explain { .. }
            | Statement::ExplainTable { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowFunctions { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::ShowSchemas { .. }
            | Statement::Set(_)
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Discard { .. }
    )
}

fn refused(s: &Statement) -> PgWireError {
    let first = s
        .to_string()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "25006".into(),
        format!(
            "Sightline is read-only over SQL: {first} is not allowed (only queries, EXPLAIN, SHOW and SET)"
        ),
    )))
}

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _: &SessionContext,
        _: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        (!is_read_only(statement)).then(|| Err(refused(statement)))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _: &SessionContext,
        _: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        (!is_read_only(statement)).then(|| Err(refused(statement)))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _: &LogicalPlan,
        _: &ParamValues,
        _: &SessionContext,
        _: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        (!is_read_only(statement)).then(|| Err(refused(statement)))
    }
}

struct Startup {
    connections: Arc<ConnectionManager>,
}

#[async_trait]
impl NoopStartupHandler for Startup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }
}

/// The handlers of every connection.
pub struct Handlers {
    session: Arc<DfSessionService>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    /// Handlers over `engine`'s session; installs the `pg_catalog` schema.
    pub fn new(engine: &QueryEngine) -> Result<Handlers, QueryError> {
        let ctx = engine.context();
        datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog(
            ctx,
            "sightline",
            Arc::new(datafusion_postgres::auth::AuthManager::default()),
        )
        .map_err(|e| QueryError::Execution(format!("cannot set up pg_catalog: {e}")))?;
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(ReadOnly),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let connections = Arc::new(ConnectionManager::new());
        Ok(Handlers {
            session: Arc::new(DfSessionService::new_with_hooks(
                Arc::new(ctx.clone()),
                hooks,
            )),
            startup: Arc::new(Startup {
                connections: connections.clone(),
            }),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        })
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// Serves PostgreSQL connections on `listener` until `stop` resolves.
pub async fn serve(listener: TcpListener, handlers: Arc<Handlers>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let h = handlers.clone();
                    tokio::spawn(async move {
                        if let Err(e) = datafusion_postgres::pgwire::tokio::process_socket(socket, None, h).await {
                            tracing::debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot accept a PostgreSQL connection"),
            }
        }
    }
}
