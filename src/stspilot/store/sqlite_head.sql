-- The newest schema of a new SQLite store: what the migrations leave in an empty
-- database (store/versions.py create_sqlite_head). Generated, do not edit:
--     .venv/bin/python -m stspilot.store.versions
-- heads: 0011
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
CREATE TABLE checks (
	id INTEGER NOT NULL, 
	domain VARCHAR(255) NOT NULL, 
	observed_at DATETIME NOT NULL, 
	stage VARCHAR(64) NOT NULL, 
	mode VARCHAR(32), 
	worst_severity VARCHAR(32), 
	findings_count INTEGER NOT NULL, 
	policy_id VARCHAR(64), 
	policy_sha256 VARCHAR(64), 
	mx_set JSON NOT NULL, 
	result JSON NOT NULL, 
	CONSTRAINT pk_checks PRIMARY KEY (id)
);
CREATE INDEX ix_checks_domain_observed_at ON checks (domain, observed_at);
CREATE TABLE raw_blobs (
	sha256 VARCHAR(64) NOT NULL, 
	report_pk INTEGER NOT NULL, 
	size INTEGER NOT NULL, 
	raw BLOB NOT NULL, 
	CONSTRAINT pk_raw_blobs PRIMARY KEY (sha256)
);
CREATE TABLE reports (
	id INTEGER NOT NULL, 
	organization_name VARCHAR(512) NOT NULL, 
	report_id VARCHAR(512) NOT NULL, 
	start_at DATETIME NOT NULL, 
	end_at DATETIME NOT NULL, 
	day DATE NOT NULL, 
	contact_info VARCHAR(512), 
	raw_sha256 VARCHAR(64) NOT NULL, 
	origin VARCHAR(1024) NOT NULL, 
	received_at DATETIME NOT NULL, 
	stored_at DATETIME NOT NULL, 
	envelope JSON, 
	deviations JSON NOT NULL, 
	policy_count INTEGER NOT NULL, 
	successful_sessions BIGINT NOT NULL, 
	failed_sessions BIGINT NOT NULL, authenticity VARCHAR(16) DEFAULT '' NOT NULL, 
	CONSTRAINT pk_reports PRIMARY KEY (id), 
	CONSTRAINT uq_reports_report_id_organization_name UNIQUE (report_id, organization_name)
);
CREATE INDEX ix_reports_day ON reports (day);
CREATE TABLE failure_details (
	report_pk INTEGER NOT NULL, 
	policy_idx INTEGER NOT NULL, 
	idx INTEGER NOT NULL, 
	policy_type VARCHAR(64) NOT NULL, 
	policy_domain VARCHAR(255) NOT NULL, 
	day DATE NOT NULL, 
	organization_name VARCHAR(512) NOT NULL, 
	result_type VARCHAR(128) NOT NULL, 
	failed_session_count BIGINT NOT NULL, 
	sending_mta_ip VARCHAR(64), 
	receiving_mx_hostname VARCHAR(255), 
	receiving_mx_helo VARCHAR(255), 
	receiving_ip VARCHAR(64), 
	additional_information TEXT, 
	failure_reason_code TEXT, authenticity VARCHAR(16) DEFAULT '' NOT NULL, 
	CONSTRAINT pk_failure_details PRIMARY KEY (report_pk, policy_idx, idx), 
	CONSTRAINT fk_failure_details_report_pk_reports FOREIGN KEY(report_pk) REFERENCES reports (id) ON DELETE CASCADE
)
 WITHOUT ROWID

;
CREATE TABLE quarantine (
	id INTEGER NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	size INTEGER NOT NULL, 
	raw BLOB NOT NULL, 
	origin VARCHAR(1024) NOT NULL, 
	code VARCHAR(128) NOT NULL, 
	reason TEXT NOT NULL, 
	received_at DATETIME NOT NULL, 
	resolved BOOLEAN NOT NULL, 
	resolved_at DATETIME, 
	resolved_report_pk INTEGER, 
	note TEXT, 
	CONSTRAINT pk_quarantine PRIMARY KEY (id), 
	CONSTRAINT fk_quarantine_resolved_report_pk_reports FOREIGN KEY(resolved_report_pk) REFERENCES reports (id) ON DELETE SET NULL, 
	CONSTRAINT uq_quarantine_sha256 UNIQUE (sha256)
);
CREATE INDEX ix_quarantine_resolved_id ON quarantine (resolved, id);
CREATE TABLE report_policies (
	report_pk INTEGER NOT NULL, 
	idx INTEGER NOT NULL, 
	policy_type VARCHAR(64) NOT NULL, 
	policy_domain VARCHAR(255) NOT NULL, 
	day DATE NOT NULL, 
	organization_name VARCHAR(512) NOT NULL, 
	policy_string JSON NOT NULL, 
	mx_host JSON NOT NULL, 
	successful_sessions BIGINT NOT NULL, 
	failed_sessions BIGINT NOT NULL, authenticity VARCHAR(16) DEFAULT '' NOT NULL, 
	CONSTRAINT pk_report_policies PRIMARY KEY (report_pk, idx), 
	CONSTRAINT fk_report_policies_report_pk_reports FOREIGN KEY(report_pk) REFERENCES reports (id) ON DELETE CASCADE
)
 WITHOUT ROWID

;
CREATE TABLE hosting_generation (
	id INTEGER NOT NULL, 
	value BIGINT NOT NULL, 
	CONSTRAINT pk_hosting_generation PRIMARY KEY (id)
);
CREATE TABLE tenants (
	id INTEGER NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_tenants PRIMARY KEY (id), 
	CONSTRAINT uq_tenants_name UNIQUE (name)
);
CREATE TABLE hosted_domains (
	id INTEGER NOT NULL, 
	tenant_id INTEGER NOT NULL, 
	domain VARCHAR(255) NOT NULL, 
	mode VARCHAR(16) NOT NULL, 
	mx JSON NOT NULL, 
	max_age INTEGER NOT NULL, 
	policy_id VARCHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	policy_text TEXT NOT NULL, 
	crlf BOOLEAN NOT NULL, 
	auto_sync_mx BOOLEAN NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	remove_after DATETIME, 
	pending_mx JSON, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_hosted_domains PRIMARY KEY (id), 
	CONSTRAINT fk_hosted_domains_tenant_id_tenants FOREIGN KEY(tenant_id) REFERENCES tenants (id), 
	CONSTRAINT uq_hosted_domains_domain UNIQUE (domain)
);
CREATE INDEX ix_hosted_domains_tenant_id ON hosted_domains (tenant_id);
CREATE TABLE users (
	id INTEGER NOT NULL, 
	tenant_id INTEGER NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	password_hash VARCHAR(256) NOT NULL, 
	is_admin BOOLEAN NOT NULL, 
	disabled BOOLEAN NOT NULL, 
	session_epoch INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, tenant_admin BOOLEAN DEFAULT 0 NOT NULL, 
	CONSTRAINT pk_users PRIMARY KEY (id), 
	CONSTRAINT fk_users_tenant_id_tenants FOREIGN KEY(tenant_id) REFERENCES tenants (id) ON DELETE CASCADE, 
	CONSTRAINT uq_users_name UNIQUE (name)
);
CREATE INDEX ix_users_tenant_id ON users (tenant_id);
CREATE TABLE api_tokens (
	id INTEGER NOT NULL, 
	user_id INTEGER NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	prefix VARCHAR(16) NOT NULL, 
	token_sha256 VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	revoked BOOLEAN NOT NULL, scope VARCHAR(8) DEFAULT 'write' NOT NULL, expires_at DATETIME, last_used_at DATETIME, 
	CONSTRAINT pk_api_tokens PRIMARY KEY (id), 
	CONSTRAINT fk_api_tokens_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE, 
	CONSTRAINT uq_api_tokens_token_sha256 UNIQUE (token_sha256)
);
CREATE INDEX ix_api_tokens_user_id ON api_tokens (user_id);
CREATE TABLE policy_versions (
	domain_id INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	policy_id VARCHAR(32) NOT NULL, 
	mode VARCHAR(16) NOT NULL, 
	mx JSON NOT NULL, 
	max_age INTEGER NOT NULL, 
	policy_text TEXT NOT NULL, 
	reason VARCHAR(512) NOT NULL, 
	actor VARCHAR(128) NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_policy_versions PRIMARY KEY (domain_id, version), 
	CONSTRAINT fk_policy_versions_domain_id_hosted_domains FOREIGN KEY(domain_id) REFERENCES hosted_domains (id) ON DELETE CASCADE
);
CREATE TABLE monitor_domains (
	domain VARCHAR(255) NOT NULL, 
	added_at DATETIME NOT NULL, 
	next_run_at DATETIME NOT NULL, 
	claimed_until DATETIME, 
	claimed_by VARCHAR(128), 
	claim_token VARCHAR(32), 
	failures INTEGER NOT NULL, 
	last_run_at DATETIME, 
	last_error TEXT, 
	CONSTRAINT pk_monitor_domains PRIMARY KEY (domain)
);
CREATE INDEX ix_monitor_domains_next_run_at ON monitor_domains (next_run_at);
CREATE INDEX ix_monitor_domains_claim_token ON monitor_domains (claim_token);
CREATE TABLE monitor_alerts (
	"key" VARCHAR(512) NOT NULL, 
	domain VARCHAR(255) NOT NULL, 
	code VARCHAR(64) NOT NULL, 
	severity VARCHAR(16) NOT NULL, 
	message TEXT NOT NULL, 
	lasting BOOLEAN NOT NULL, 
	first_seen_at DATETIME NOT NULL, 
	last_seen_at DATETIME NOT NULL, 
	last_sent_at DATETIME, 
	resolved_at DATETIME, 
	CONSTRAINT pk_monitor_alerts PRIMARY KEY ("key")
);
CREATE INDEX ix_monitor_alerts_domain_resolved_at ON monitor_alerts (domain, resolved_at);
CREATE TABLE publish_runs (
	id INTEGER NOT NULL, 
	domain VARCHAR(255) NOT NULL, 
	action VARCHAR(32) NOT NULL, 
	actor VARCHAR(128) NOT NULL, 
	reason TEXT NOT NULL, 
	dns VARCHAR(255) NOT NULL, 
	destination VARCHAR(512) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	error TEXT, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_publish_runs PRIMARY KEY (id)
);
CREATE INDEX ix_publish_runs_domain_id ON publish_runs (domain, id);
CREATE TABLE publish_steps (
	run_id INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	target JSON NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	outcome JSON, 
	error TEXT, 
	intended_at DATETIME, 
	done_at DATETIME, 
	verified_at DATETIME, 
	CONSTRAINT pk_publish_steps PRIMARY KEY (run_id, seq), 
	CONSTRAINT fk_publish_steps_run_id_publish_runs FOREIGN KEY(run_id) REFERENCES publish_runs (id) ON DELETE CASCADE
);
CREATE TABLE intake_usage (
	day DATE NOT NULL, 
	scope VARCHAR(300) NOT NULL, 
	bytes BIGINT NOT NULL, 
	units INTEGER NOT NULL, 
	CONSTRAINT pk_intake_usage PRIMARY KEY (day, scope)
);
CREATE TABLE monitor_heal (
	domain VARCHAR(255) NOT NULL, 
	id_bump BOOLEAN NOT NULL, 
	mx_sync BOOLEAN NOT NULL, 
	updated_at DATETIME NOT NULL, 
	updated_by VARCHAR(128) NOT NULL, 
	CONSTRAINT pk_monitor_heal PRIMARY KEY (domain)
);
CREATE TABLE monitor_sightings (
	domain VARCHAR(255) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	fingerprint VARCHAR(64) NOT NULL, 
	detail TEXT NOT NULL, 
	first_seen_at DATETIME NOT NULL, 
	last_seen_at DATETIME NOT NULL, 
	checks INTEGER NOT NULL, 
	CONSTRAINT pk_monitor_sightings PRIMARY KEY (domain, kind)
);
CREATE INDEX ix_report_policies_domain_day_covering ON report_policies (policy_domain, day, authenticity, organization_name, successful_sessions, failed_sessions);
CREATE INDEX ix_failure_details_domain_day_covering ON failure_details (policy_domain, day, result_type, receiving_mx_hostname, organization_name, authenticity, failed_session_count);
INSERT INTO "alembic_version" VALUES('0011');
INSERT INTO "hosting_generation" VALUES(1,0);
