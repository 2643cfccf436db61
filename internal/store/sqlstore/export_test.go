package sqlstore

// ReadMigrations exposes the migration reader to tests.
var ReadMigrations = readMigrations
