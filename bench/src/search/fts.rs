//! The PostgreSQL full-text search baseline: the same documents in a scratch database
//! (`medledger_bench_fts`), tsvector columns for the english and russian configurations
//! and both, ranked by `ts_rank_cd`.

use std::sync::Arc;

use anyhow::Context as _;
use serde_json::{Map, Value};
use sqlx::{Connection as _, PgPool, Row as _};

use super::load::{Filters, Request, Sent};

const FTS_DB: &str = "medledger_bench_fts";

/// The text medledger indexes for a dataset, in PostgreSQL's weight classes: title (A);
/// tags, task types and slug words (B); description (D).
#[derive(Clone)]
pub struct Doc {
    slug: String,
    title: String,
    description: String,
    keywords: String,
    modality: String,
    area: String,
    task_types: String,
    tags: String,
    year: Option<i32>,
    num_images: Option<i64>,
}

pub fn doc_of(d: &Map<String, Value>) -> Doc {
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let list = |k: &str| -> Vec<String> {
        d.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let (tags, tasks) = (list("tags"), list("task_types"));
    Doc {
        slug: s("slug"),
        title: s("title"),
        description: s("description"),
        keywords: format!("{}\n{}\n{}", tags.join(", "), tasks.join(" "), s("slug").replace('-', " ")),
        modality: list("modality").join(","),
        area: s("area"),
        task_types: tasks.join(","),
        tags: tags.join(","),
        year: d.get("year").and_then(Value::as_i64).map(|y| y as i32),
        num_images: d.get("num_images").and_then(Value::as_i64),
    }
}

pub async fn database(admin_url: &str) -> anyhow::Result<PgPool> {
    let mut admin = sqlx::PgConnection::connect(admin_url).await.context("connect to PostgreSQL")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {FTS_DB} WITH (FORCE)"))).execute(&mut admin).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {FTS_DB}"))).execute(&mut admin).await?;
    let (prefix, _) = admin_url.rsplit_once('/').context("URL without database")?;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(16).connect(&format!("{prefix}/{FTS_DB}")).await?;
    let vector = |cfg: &str| {
        format!(
            "setweight(to_tsvector('{cfg}', title), 'A') || setweight(to_tsvector('{cfg}', keywords), 'B') \
             || setweight(to_tsvector('{cfg}', description), 'D')"
        )
    };
    let ddl = format!(
        "CREATE TABLE docs (
            id serial PRIMARY KEY, slug text NOT NULL, title text NOT NULL, description text NOT NULL,
            keywords text NOT NULL, modality text[] NOT NULL, area text NOT NULL, task_types text[] NOT NULL,
            tags text[] NOT NULL, year int, num_images bigint,
            doc_en tsvector GENERATED ALWAYS AS ({en}) STORED,
            doc_ru tsvector GENERATED ALWAYS AS ({ru}) STORED,
            doc_both tsvector GENERATED ALWAYS AS ({en} || {ru}) STORED)",
        en = vector("english"),
        ru = vector("russian"),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl)).execute(&pool).await?;
    Ok(pool)
}

pub async fn load(pool: &PgPool, docs: &[Doc]) -> anyhow::Result<()> {
    sqlx::raw_sql("TRUNCATE docs RESTART IDENTITY; DROP INDEX IF EXISTS docs_both").execute(pool).await?;
    for chunk in docs.chunks(5_000) {
        let col = |f: fn(&Doc) -> &String| chunk.iter().map(|d| f(d).clone()).collect::<Vec<String>>();
        sqlx::query(
            "INSERT INTO docs (slug, title, description, keywords, modality, area, task_types, tags, year, num_images)
             SELECT s, t, d, k, coalesce(string_to_array(NULLIF(m, ''), ','), '{}'), a,
                    coalesce(string_to_array(NULLIF(tt, ''), ','), '{}'), coalesce(string_to_array(NULLIF(tg, ''), ','), '{}'), y, n
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                         $9::int[], $10::bigint[]) AS u(s, t, d, k, m, a, tt, tg, y, n)",
        )
        .bind(col(|d| &d.slug))
        .bind(col(|d| &d.title))
        .bind(col(|d| &d.description))
        .bind(col(|d| &d.keywords))
        .bind(col(|d| &d.modality))
        .bind(col(|d| &d.area))
        .bind(col(|d| &d.task_types))
        .bind(col(|d| &d.tags))
        .bind(chunk.iter().map(|d| d.year).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.num_images).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// The PostgreSQL formulations compared. `AND`: `websearch_to_tsquery` (every word must
/// match); `OR`: the same lexemes with `&` turned into `|` (any word may match).
/// "both": document vector english || russian, query english || russian.
pub const VARIANTS: [(&str, &str, &str); 6] = [
    ("english, AND", "doc_en", "websearch_to_tsquery('english', $1)"),
    ("english, OR", "doc_en", "replace(websearch_to_tsquery('english', $1)::text, '&', '|')::tsquery"),
    ("russian, AND", "doc_ru", "websearch_to_tsquery('russian', $1)"),
    ("russian, OR", "doc_ru", "replace(websearch_to_tsquery('russian', $1)::text, '&', '|')::tsquery"),
    ("both, AND", "doc_both", BOTH_AND),
    ("both, OR", "doc_both", BOTH_OR),
];
pub const BOTH_AND: &str = "(websearch_to_tsquery('english', $1) || websearch_to_tsquery('russian', $1))";
pub const BOTH_OR: &str = "replace((websearch_to_tsquery('english', $1) || websearch_to_tsquery('russian', $1))::text, '&', '|')::tsquery";

/// Top `limit` by `ts_rank_cd`, with optional hard filters ($2 modality, $3 area, $4 task types).
pub fn sql(vector: &str, tsquery: &str, limit: usize) -> String {
    format!(
        "SELECT d.id, d.slug, d.title, d.description, d.modality, d.area, d.task_types, d.tags, d.year, d.num_images,
                ts_rank_cd(d.{vector}, q.query) AS rank
         FROM docs d, (SELECT {tsquery} AS query) q
         WHERE d.{vector} @@ q.query
           AND ($2::text[] IS NULL OR d.modality && $2) AND ($3::text IS NULL OR d.area = $3)
           AND ($4::text[] IS NULL OR d.task_types && $4)
         ORDER BY rank DESC, d.id LIMIT {limit}"
    )
}

pub async fn query(pool: &PgPool, sql: &str, text: &str, f: &Filters) -> anyhow::Result<Vec<String>> {
    let none_if_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let rows: Vec<sqlx::postgres::PgRow> = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(text)
        .bind(none_if_empty(&f.modality))
        .bind(f.area.clone())
        .bind(none_if_empty(&f.task_types))
        .fetch_all(pool)
        .await?;
    rows.iter().map(|r| r.try_get::<String, _>("slug").map_err(Into::into)).collect()
}

/// The mix as SQL: searches with `search_tsquery`, lists with `list_tsquery` (over
/// `doc_both`, GIN-indexed), 20 rows each, full rows fetched.
pub fn sender(pg: &PgPool, search_tsquery: &str, list_tsquery: &str) -> impl Fn(Request) -> Sent + Send + Sync + 'static {
    let pg = pg.clone();
    let sql_search = Arc::new(sql("doc_both", search_tsquery, 20));
    let sql_list = Arc::new(sql("doc_both", list_tsquery, 20));
    move |r: Request| {
        let (pg, sql_search, sql_list) = (pg.clone(), sql_search.clone(), sql_list.clone());
        Box::pin(async move {
            match r {
                Request::Search { text, filters } => query(&pg, &sql_search, &text, &filters).await?,
                Request::List { text, modality } => {
                    let filters = Filters { modality: modality.into_iter().collect(), ..Default::default() };
                    query(&pg, &sql_list, &text, &filters).await?
                }
            };
            Ok(())
        })
    }
}
