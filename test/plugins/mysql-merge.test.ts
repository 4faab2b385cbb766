/**
 * The restore-side filter that joins the single-row INSERTs of our dumps into multi-row ones:
 * only data lines of a table's LOCK TABLES section are joined, never lines of a DELIMITER block,
 * statements stay under the size limit, and the result does not depend on how the stream is cut.
 */
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { InsertMerger } from '../../src/plugins/mysql/load.js';

async function merge(pieces: Array<string | Buffer>): Promise<{ text: string; merger: InsertMerger }> {
  const merger = new InsertMerger();
  const out = await buffer(Readable.from(pieces.map((p) => (typeof p === 'string' ? Buffer.from(p) : p))).pipe(merger));
  return { text: out.toString('utf8'), merger };
}

const DUMP = [
  '/*M!999999\\- enable the sandbox mode */ ',
  '-- MariaDB dump',
  'DROP TABLE IF EXISTS `t`;',
  'CREATE TABLE `t` (',
  '  `id` int(11) NOT NULL,',
  '  PRIMARY KEY (`id`)',
  ') ENGINE=InnoDB;',
  'SET @OLD_AUTOCOMMIT=@@AUTOCOMMIT, @@AUTOCOMMIT=0;',
  'LOCK TABLES `t` WRITE;',
  '/*!40000 ALTER TABLE `t` DISABLE KEYS */;',
  "INSERT INTO `t` VALUES (1,'a');",
  "INSERT INTO `t` VALUES (2,'it''s \\\\ );');",
  "INSERT INTO `t` VALUES (3,NULL);",
  '/*!40000 ALTER TABLE `t` ENABLE KEYS */;',
  'UNLOCK TABLES;',
  'COMMIT;',
  'CREATE TABLE `we``ird` (id int);',
  'DELIMITER ;;',
  '/*!50003 CREATE*/ /*!50003 TRIGGER trg AFTER INSERT ON t FOR EACH ROW BEGIN',
  "INSERT INTO `t` VALUES (10,'x');",
  "INSERT INTO `t` VALUES (11,'y');",
  'END */;;',
  'DELIMITER ;',
  'DELIMITER ;;',
  'CREATE DEFINER=`root`@`localhost` PROCEDURE `archive`()',
  'BEGIN',
  'CREATE TABLE `t_archive` (id INT);',
  'CREATE SEQUENCE `s_archive`;',
  'END ;;',
  'DELIMITER ;',
  "INSERT INTO `t` VALUES (20,'outside a data section');",
  "INSERT INTO `t` VALUES (21,'outside a data section');",
  '-- Dump completed',
  '',
].join('\n');

describe('InsertMerger', () => {
  it('joins the rows of a data section and leaves everything else alone', async () => {
    const { text, merger } = await merge([DUMP]);
    expect(text).toContain("INSERT INTO `t` VALUES (1,'a'),\n(2,'it''s \\\\ );'),\n(3,NULL);\n/*!40000 ALTER TABLE `t` ENABLE KEYS */;");
    expect(text).toContain("BEGIN\nINSERT INTO `t` VALUES (10,'x');\nINSERT INTO `t` VALUES (11,'y');\nEND */;;");
    expect(text).toContain("INSERT INTO `t` VALUES (20,'outside a data section');\nINSERT INTO `t` VALUES (21,'outside a data section');\n");
    expect(text.replace("(1,'a'),\n(2,", "(1,'a');\nINSERT INTO `t` VALUES (2,").replace("),\n(3,NULL)", ");\nINSERT INTO `t` VALUES (3,NULL)")).toBe(DUMP);
    // A routine's body is no table of the dump, whatever its lines start with.
    expect([...merger.tables].sort()).toEqual(['t', 'we`ird']);
    expect(merger.bytes).toBe(Buffer.byteLength(DUMP));
  });

  it('gives the same output however the stream is cut', async () => {
    const whole = (await merge([DUMP])).text;
    const bytes = Buffer.from(DUMP);
    for (let cut = 1; cut < bytes.length; cut += 7) {
      expect((await merge([bytes.subarray(0, cut), bytes.subarray(cut)])).text).toBe(whole);
    }
    expect((await merge(Array.from(bytes).map((b) => Buffer.from([b])))).text).toBe(whole);
  });

  it('starts a new statement before one grows past 1 MiB', async () => {
    const row = `'${'x'.repeat(1000)}'`;
    const lines = ['LOCK TABLES `big` WRITE;'];
    for (let i = 0; i < 3000; i++) lines.push(`INSERT INTO \`big\` VALUES (${i},${row});`);
    lines.push('UNLOCK TABLES;', '');
    const { text } = await merge([lines.join('\n')]);
    const statements = text.split('INSERT INTO `big` VALUES ').slice(1);
    expect(statements.length).toBe(3);
    for (const statement of statements) expect(statement.length).toBeLessThan(1024 * 1024 + 100);
    expect(text.match(/\(\d+,'x+'\)/g)).toHaveLength(3000);
  });

  it('passes an INSERT that spans several lines through unchanged', async () => {
    const legacy = "LOCK TABLES `t` WRITE;\nINSERT INTO `t` VALUES (1,'a'),(2,'b');\nINSERT INTO `t` VALUES\n(3,'c'),\n(4,'d');\nUNLOCK TABLES;\n";
    expect((await merge([legacy])).text).toBe(legacy);
  });

  it('joins consecutive one-line multi-row INSERTs (mysqldump --extended-insert) into one valid statement', async () => {
    const legacy = "LOCK TABLES `t` WRITE;\nINSERT INTO `t` VALUES (1,'a'),(2,'b');\nINSERT INTO `t` VALUES (3,'c'),(4,'d');\nUNLOCK TABLES;\n";
    expect((await merge([legacy])).text).toBe("LOCK TABLES `t` WRITE;\nINSERT INTO `t` VALUES (1,'a'),(2,'b'),\n(3,'c'),(4,'d');\nUNLOCK TABLES;\n");
  });
});
