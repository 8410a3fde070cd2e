//! CrudBase stamped onto a real table: every operation, filters, sorting, pages.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use keel_core::ApiError;
use keel_core::crud::{CrudBase, PageParams, Sort};
use keel_core::impl_crud;
use keel_testkit::TestDb;

diesel::table! {
    widgets (id) {
        id -> Int4,
        name -> Text,
        color -> Text,
        weight -> Int4,
    }
}

#[derive(Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = widgets, check_for_backend(Pg))]
struct Widget {
    id: i32,
    name: String,
    color: String,
    weight: i32,
}

#[derive(Insertable)]
#[diesel(table_name = widgets)]
struct NewWidget {
    name: String,
    color: String,
    weight: i32,
}

#[derive(Default, AsChangeset)]
#[diesel(table_name = widgets)]
struct WidgetChanges {
    name: Option<String>,
    weight: Option<i32>,
}

#[derive(Default)]
struct WidgetFilter {
    color: Option<String>,
    search: Option<String>,
}

keel_core::sort_keys! {
    enum WidgetSort { Name = "name", Weight = "weight" }
}

struct WidgetCrud;

impl_crud! {
    WidgetCrud {
        table: widgets::table,
        id: widgets::id => i32,
        row: Widget,
        new: NewWidget,
        changes: WidgetChanges,
        filter: WidgetFilter => filter_widgets,
        sort: WidgetSort => sort_widgets,
    }
}

fn filter_widgets<'a>(
    mut query: widgets::BoxedQuery<'a, Pg>,
    filter: &'a WidgetFilter,
) -> widgets::BoxedQuery<'a, Pg> {
    if let Some(color) = &filter.color {
        query = query.filter(widgets::color.eq(color));
    }
    if let Some(search) = &filter.search {
        query = query.filter(widgets::name.ilike(format!("%{search}%")));
    }
    query
}

fn sort_widgets(
    query: widgets::BoxedQuery<'_, Pg>,
    sort: Sort<WidgetSort>,
) -> widgets::BoxedQuery<'_, Pg> {
    match sort.key {
        WidgetSort::Name => sort.apply(query, widgets::name),
        WidgetSort::Weight => sort.apply(query, widgets::weight),
    }
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug, E: Into<ApiError>>(result: Result<T, E>) {
    let err = result.expect_err("no such row");
    assert!(matches!(err.into(), ApiError::NotFound));
}

async fn setup() -> (TestDb, AsyncPgConnection) {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    conn.batch_execute(
        "CREATE TABLE widgets (id serial PRIMARY KEY, name text NOT NULL UNIQUE, \
         color text NOT NULL, weight int NOT NULL)",
    )
    .await
    .unwrap();
    (db, conn)
}

fn new(name: &str, color: &str, weight: i32) -> NewWidget {
    NewWidget {
        name: name.to_owned(),
        color: color.to_owned(),
        weight,
    }
}

#[tokio::test]
async fn create_get_update_delete() {
    let (_db, mut conn) = setup().await;
    let created = WidgetCrud::create(&mut conn, &new("bolt", "grey", 5))
        .await
        .unwrap();
    assert_eq!(created.name, "bolt");
    assert_eq!(
        WidgetCrud::get(&mut conn, created.id).await.unwrap(),
        created
    );

    let changes = WidgetChanges {
        weight: Some(7),
        ..WidgetChanges::default()
    };
    let updated = WidgetCrud::update(&mut conn, created.id, &changes)
        .await
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.weight),
        ("bolt", 7),
        "None fields stay"
    );

    assert!(WidgetCrud::delete(&mut conn, created.id).await.unwrap());
    assert!(!WidgetCrud::delete(&mut conn, created.id).await.unwrap());
    assert_not_found(WidgetCrud::get(&mut conn, created.id).await);
    assert_not_found(WidgetCrud::update(&mut conn, created.id, &changes).await);
}

#[tokio::test]
async fn an_update_with_no_fields_returns_the_row_unchanged() {
    let (_db, mut conn) = setup().await;
    let created = WidgetCrud::create(&mut conn, &new("washer", "blue", 3))
        .await
        .unwrap();
    let empty = WidgetChanges::default();
    let same = WidgetCrud::update(&mut conn, created.id, &empty)
        .await
        .unwrap();
    assert_eq!(same, created);
    // Still a 404 for a row that isn't there, not a 200 with nothing.
    assert_not_found(WidgetCrud::update(&mut conn, created.id + 1000, &empty).await);
}

#[tokio::test]
async fn a_taken_unique_value_is_a_conflict_naming_the_field() {
    let (_db, mut conn) = setup().await;
    WidgetCrud::create(&mut conn, &new("nut", "grey", 1))
        .await
        .unwrap();
    let err = WidgetCrud::create(&mut conn, &new("nut", "red", 2))
        .await
        .unwrap_err();
    assert!(matches!(ApiError::from(err), ApiError::Conflict { ref field } if field == "name"));
}

#[tokio::test]
async fn lists_filter_sort_and_page() {
    let (_db, mut conn) = setup().await;
    for (name, color, weight) in [
        ("axle", "red", 30),
        ("bolt", "grey", 5),
        ("cog", "red", 12),
        ("dowel", "red", 12),
        ("eyelet", "blue", 1),
    ] {
        WidgetCrud::create(&mut conn, &new(name, color, weight))
            .await
            .unwrap();
    }
    let names = |listed: &keel_core::crud::Listed<Widget>| {
        listed
            .items
            .iter()
            .map(|w| w.name.clone())
            .collect::<Vec<_>>()
    };

    let red = WidgetFilter {
        color: Some("red".to_owned()),
        ..WidgetFilter::default()
    };
    let by_weight_desc = Sort::desc(WidgetSort::Weight);
    let first = WidgetCrud::list(
        &mut conn,
        &red,
        by_weight_desc,
        PageParams::new(Some(1), Some(2)).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(first.total, 3);
    // Equal weights are ordered by id, so pages never overlap.
    assert_eq!(names(&first), ["axle", "cog"]);
    let second = WidgetCrud::list(
        &mut conn,
        &red,
        by_weight_desc,
        PageParams::new(Some(2), Some(2)).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(names(&second), ["dowel"]);
    let past_end = WidgetCrud::list(
        &mut conn,
        &red,
        by_weight_desc,
        PageParams::new(Some(9), Some(2)).unwrap(),
    )
    .await
    .unwrap();
    assert!(past_end.items.is_empty());
    assert_eq!(past_end.total, 3);

    let search = WidgetFilter {
        search: Some("O".to_owned()),
        ..WidgetFilter::default()
    };
    let found = WidgetCrud::list(
        &mut conn,
        &search,
        Sort::asc(WidgetSort::Name),
        PageParams::default(),
    )
    .await
    .unwrap();
    assert_eq!(names(&found), ["bolt", "cog", "dowel"]);
    assert_eq!(
        WidgetCrud::count(&mut conn, &WidgetFilter::default())
            .await
            .unwrap(),
        5
    );
}

#[test]
fn sort_parameters_are_whitelisted() {
    let default = Sort::asc(WidgetSort::Name);
    let allowed = ["name", "weight"];
    let sort = Sort::<WidgetSort>::parse(Some("-weight"), default, &allowed).unwrap();
    assert!(matches!(sort.key, WidgetSort::Weight));
    assert_eq!(sort.order, keel_core::crud::SortOrder::Desc);
    assert!(matches!(
        Sort::parse(None, default, &allowed).unwrap().key,
        WidgetSort::Name
    ));
    let Err(ApiError::Validation(errors)) =
        Sort::<WidgetSort>::parse(Some("password"), default, &allowed)
    else {
        panic!("an unknown sort key is refused");
    };
    assert_eq!(errors[0].field, "sort");
    assert!(
        errors[0].message.contains("name, weight"),
        "{}",
        errors[0].message
    );
}

#[tokio::test]
async fn crud_functions_run_inside_a_transaction() {
    let (db, _conn) = setup().await;
    let settings = keel_testkit::settings(db.url(), &[]);
    let pool = keel_core::db::Db::new(&db.secret_url(), &settings.database, "keel-test");
    let result: Result<(), ApiError> = pool
        .transaction(async move |conn| {
            WidgetCrud::create(conn, &new("gear", "grey", 3)).await?;
            WidgetCrud::create(conn, &new("gear", "grey", 4)).await?;
            Ok(())
        })
        .await;
    assert!(matches!(result, Err(ApiError::Conflict { .. })));
    let mut conn = pool.conn().await.unwrap();
    assert_eq!(
        WidgetCrud::count(&mut conn, &WidgetFilter::default())
            .await
            .unwrap(),
        0,
        "the first insert rolled back with the second"
    );
}
