use std::time::Instant;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteJournalMode, SqliteSynchronous};

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteConnectOptions::new().filename(dir.path().join("x.db")).create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Normal);
    let pool = SqlitePoolOptions::new().max_connections(1).test_before_acquire(false).connect_with(opts).await.unwrap();
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)").execute(&pool).await.unwrap();
    for round in 0..3 {
        let n = 20000;
        let t = Instant::now();
        for _ in 0..n { let _: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await.unwrap(); }
        let rt = t.elapsed().as_secs_f64() / n as f64 * 1e6;
        let t = Instant::now();
        for _ in 0..n { sqlx::query("INSERT INTO t (v) VALUES (?1)").bind("hello world").execute(&pool).await.unwrap(); }
        let ins = t.elapsed().as_secs_f64() / n as f64 * 1e6;
        let t = Instant::now();
        for _ in 0..n/4 {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
            sqlx::query("INSERT INTO t (v) VALUES (?1)").bind("hello world").execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        }
        let txi = t.elapsed().as_secs_f64() / (n/4) as f64 * 1e6;
        let mut conn = pool.acquire().await.unwrap();
        let t = Instant::now();
        for _ in 0..n { let _: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await.unwrap(); }
        let rtc = t.elapsed().as_secs_f64() / n as f64 * 1e6;
        drop(conn);
        println!("round {round}: select1 via pool {rt:.1}us, via conn {rtc:.1}us, autocommit insert {ins:.1}us, tx insert {txi:.1}us");
    }
}
