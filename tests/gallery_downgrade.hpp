// SQL that takes a gallery of schema version 4 or 5 back to version 3 (no change log), for the
// tests of migrating older galleries.
#pragma once

namespace facemag::test {

inline constexpr const char* kGalleryVersion4To3 =
    "DROP TABLE changes; DROP TRIGGER log_templates_INSERT; DROP TRIGGER log_templates_UPDATE;"
    "DROP TRIGGER log_templates_DELETE; DROP TRIGGER log_persons_UPDATE;"
    "DROP TRIGGER log_persons_DELETE; DROP TRIGGER log_proposed_INSERT;"
    "DROP TRIGGER log_proposed_DELETE; ALTER TABLE state DROP COLUMN log_from;"
    "DELETE FROM meta WHERE key = 'uid'; UPDATE meta SET value = '3' WHERE key = 'schema_version';";

}  // namespace facemag::test
