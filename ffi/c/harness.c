/*
 * The C test harness for ferry.h: every exported function, used as an app
 * would and misused as an app might (NULL handles and out-pointers,
 * invalid UTF-8, wrong lengths, bad codes, double frees, calls after stop,
 * several threads at once, stopping and freeing while threads wait).
 * Built with -Wall -Wextra -Werror and run by ffi/tests/c_programs.rs
 * plainly, under valgrind and under AddressSanitizer.
 *
 * Usage: harness <scratch directory>
 */
#include "ferry.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static int failures = 0;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                      \
            failures++;                                                    \
        }                                                                  \
    } while (0)

#define EXPECT(call, code)                                                 \
    do {                                                                   \
        FerryResult r_ = (call);                                           \
        if (r_ != (code)) {                                                \
            fprintf(stderr, "%s:%d: %s returned %u (%s), expected %u\n",   \
                    __FILE__, __LINE__, #call, (unsigned)r_,               \
                    ferry_result_str(r_), (unsigned)(code));               \
            failures++;                                                    \
        }                                                                  \
    } while (0)

#define OK(call) EXPECT(call, FERRY_RESULT_OK)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char scratch[512];

static void path_of(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", scratch, name);
}

/* A node on loopback with a fast KDF, no QUIC, no mDNS, short timings. */
static FerryNode *start_node(const char *name) {
    char dir[600];
    path_of(dir, sizeof dir, name);
    FerryConfig *config = NULL;
    OK(ferry_config_new(&config));
    OK(ferry_config_set_storage(config, dir, "correct horse battery"));
    OK(ferry_config_set_kdf(config, 256, 1, 1));
    OK(ferry_config_add_listen_address(config, "/ip4/127.0.0.1/tcp/0"));
    OK(ferry_config_set_transports(config, false, false));
    OK(ferry_config_set_timing(config, 2, 1));
    OK(ferry_config_set_display_name(config, name));
    FerryNode *node = NULL;
    FerryResult r = ferry_node_start(config, &node);
    if (r != FERRY_RESULT_OK) {
        char *why = ferry_config_last_error(config);
        fprintf(stderr, "start %s: %s: %s\n", name, ferry_result_str(r),
                why ? why : "?");
        ferry_string_free(&why);
        failures++;
    }
    ferry_config_free(&config);
    CHECK(config == NULL);
    return node;
}

/* Waits for an event of `kind` (others are freed); NULL on timeout. */
static FerryEvent *wait_event(FerryNode *node, FerryEventKind kind,
                              double seconds) {
    double deadline = now_s() + seconds;
    while (now_s() < deadline) {
        FerryEvent *event = NULL;
        FerryResult r = ferry_next_event(node, 200, &event);
        if (r == FERRY_RESULT_TIMEOUT) {
            CHECK(event == NULL);
            continue;
        }
        if (r != FERRY_RESULT_OK) {
            fprintf(stderr, "next_event: %s\n", ferry_result_str(r));
            return NULL;
        }
        if (event->kind == kind) {
            return event;
        }
        ferry_event_free(&event);
    }
    return NULL;
}

/* Waits until `id` has `status` (stored), reading events meanwhile. */
static int wait_status(FerryNode *node, const FerryMessageId *id,
                       FerryMessageStatus status, double seconds) {
    double deadline = now_s() + seconds;
    while (now_s() < deadline) {
        FerryStatus s;
        OK(ferry_node_message_status(node, id, &s));
        if (s.status == status) {
            return 1;
        }
        FerryEvent *event = NULL;
        if (ferry_next_event(node, 200, &event) == FERRY_RESULT_OK) {
            ferry_event_free(&event);
        }
    }
    return 0;
}

static void test_version_and_codes(void) {
    CHECK(ferry_abi_version() == FERRY_ABI_VERSION);
    CHECK(strlen(ferry_version()) > 0);
    CHECK(strcmp(ferry_result_str(FERRY_RESULT_OK), "ok") == 0);
    CHECK(strcmp(ferry_result_str(FERRY_RESULT_CLOSED),
                 "the node has stopped") == 0);
    CHECK(strcmp(ferry_result_str(12345), "unknown result code") == 0);
    CHECK(ferry_max_message_body() >= 60000);
}

static void test_misuse_without_a_node(void) {
    /* NULL handles and out-pointers. */
    EXPECT(ferry_config_new(NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_config_set_storage(NULL, "x", "y"),
           FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_start(NULL, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_stop(NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_send(NULL, NULL, NULL, 0, NULL),
           FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_next_event(NULL, 0, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_link_write(NULL, NULL, 0, 0, NULL),
           FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_link_read(NULL, NULL, 0, 0, NULL),
           FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_link_close(NULL), FERRY_RESULT_NULL_ARGUMENT);
    CHECK(ferry_link_id(NULL) == 0);
    CHECK(ferry_node_last_error(NULL) == NULL);
    CHECK(ferry_config_last_error(NULL) == NULL);
    CHECK(ferry_link_last_error(NULL) == NULL);
    EXPECT(ferry_message_id_to_hex(NULL, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_qr_svg(NULL, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_wipe_store(NULL), FERRY_RESULT_NULL_ARGUMENT);

    /* Frees of NULL, and of a pointer to NULL, do nothing. */
    ferry_config_free(NULL);
    ferry_node_free(NULL);
    ferry_link_free(NULL);
    ferry_event_free(NULL);
    ferry_string_free(NULL);
    ferry_bytes_free(NULL);
    ferry_contact_list_free(NULL);
    ferry_message_list_free(NULL);
    FerryConfig *no_config = NULL;
    ferry_config_free(&no_config);
    char *no_string = NULL;
    ferry_string_free(&no_string);

    /* A config: bad UTF-8, bad addresses, bad KDF, no storage. */
    FerryConfig *config = NULL;
    OK(ferry_config_new(&config));
    const char bad_utf8[] = {(char)0xff, (char)0xfe, 0};
    EXPECT(ferry_config_set_storage(config, bad_utf8, "p"),
           FERRY_RESULT_INVALID_ARGUMENT);
    char *why = ferry_config_last_error(config);
    CHECK(why != NULL && strstr(why, "UTF-8") != NULL);
    ferry_string_free(&why);
    CHECK(why == NULL);
    EXPECT(ferry_config_set_storage(config, NULL, "p"),
           FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_config_add_listen_address(config, "not an address"),
           FERRY_RESULT_INVALID_ARGUMENT);
    EXPECT(ferry_config_add_bridge(config, "obfs4 nonsense"),
           FERRY_RESULT_INVALID_ARGUMENT);
    EXPECT(ferry_config_set_kdf(config, 0, 0, 0),
           FERRY_RESULT_INVALID_ARGUMENT);
    EXPECT(ferry_config_add_bootstrap(config, "not an address"),
           FERRY_RESULT_INVALID_ARGUMENT);
    OK(ferry_config_add_bootstrap(config,
        "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"));
    OK(ferry_config_set_keep_history(config, 0));
    OK(ferry_config_set_relay(config));
    EXPECT(ferry_config_set_pluggable_transport(config, NULL, "/tmp"),
           FERRY_RESULT_NULL_ARGUMENT);
    OK(ferry_config_set_pluggable_transport(config, "/nonexistent/obfs4proxy",
                                            "/tmp"));
    EXPECT(ferry_config_set_display_name(config, bad_utf8),
           FERRY_RESULT_INVALID_ARGUMENT);
    FerryNode *node = NULL;
    EXPECT(ferry_node_start(config, &node), FERRY_RESULT_CONFIG);
    CHECK(node == NULL);
    EXPECT(ferry_node_start(config, NULL), FERRY_RESULT_NULL_ARGUMENT);
    ferry_config_free(&config);
    ferry_config_free(&config); /* guarded double free */
    CHECK(config == NULL);

    /* Helpers that need no node. */
    FerryMessageId id;
    EXPECT(ferry_message_id_from_hex("zz", &id),
           FERRY_RESULT_INVALID_ARGUMENT);
    OK(ferry_message_id_from_hex("000102030405060708090a0b0c0d0e0f", &id));
    CHECK(id.bytes[15] == 15);
    char *hex = NULL;
    OK(ferry_message_id_to_hex(&id, &hex));
    CHECK(hex && strcmp(hex, "000102030405060708090a0b0c0d0e0f") == 0);
    ferry_string_free(&hex);
    FerryIdentityKey weak;
    memset(&weak, 0, sizeof weak);
    EXPECT(ferry_identity_key_to_hex(&weak, &hex),
           FERRY_RESULT_INVALID_ARGUMENT);
    char not_a_store[600];
    path_of(not_a_store, sizeof not_a_store, "not-a-store");
    mkdir(not_a_store, 0700);
    EXPECT(ferry_wipe_store(not_a_store), FERRY_RESULT_STORE);
    FerryBytes png = {0};
    EXPECT(ferry_qr_png("ferry1abc", 0, &png), FERRY_RESULT_INVALID_ARGUMENT);
}

struct hammer {
    FerryNode *node;
    FerryIdentityKey contact;
    int rounds;
    int errors;
};

/* Several threads on one node at once. */
static void *hammer_thread(void *arg) {
    struct hammer *h = arg;
    for (int i = 0; i < h->rounds; i++) {
        FerryContactList *list = NULL;
        if (ferry_node_contacts(h->node, &list) != FERRY_RESULT_OK) {
            h->errors++;
        }
        ferry_contact_list_free(&list);
        char *code = NULL;
        if (ferry_node_contact_code(h->node, &code) != FERRY_RESULT_OK) {
            h->errors++;
        }
        ferry_string_free(&code);
        FerryIdentityKey me;
        if (ferry_node_identity(h->node, &me) != FERRY_RESULT_OK) {
            h->errors++;
        }
        FerryMessageList *page = NULL;
        if (ferry_node_messages(h->node, &h->contact, 0, 5, &page) !=
            FERRY_RESULT_OK) {
            h->errors++;
        }
        ferry_message_list_free(&page);
        const char body[] = "from a thread";
        FerryMessageId id;
        if (ferry_node_send(h->node, &h->contact, (const uint8_t *)body,
                            sizeof body - 1, &id) != FERRY_RESULT_OK) {
            h->errors++;
        }
    }
    return NULL;
}

static void test_two_nodes(void) {
    FerryNode *a = start_node("alice");
    FerryNode *b = start_node("bob");
    if (!a || !b) {
        ferry_node_free(&a);
        ferry_node_free(&b);
        return;
    }
    /* Codes, QR, adding contacts (and the mistakes). */
    char *code_a = NULL, *code_b = NULL;
    OK(ferry_node_contact_code(a, &code_a));
    OK(ferry_node_contact_code(b, &code_b));
    CHECK(code_a && strncmp(code_a, "ferry1", 6) == 0);
    char *svg = NULL;
    OK(ferry_qr_svg(code_a, &svg));
    CHECK(svg && strstr(svg, "<svg") != NULL);
    ferry_string_free(&svg);
    FerryBytes png = {0};
    OK(ferry_qr_png(code_a, 4, &png));
    CHECK(png.len > 8 && png.data[1] == 'P' && png.data[2] == 'N');
    ferry_bytes_free(&png);
    ferry_bytes_free(&png); /* emptied: a second free does nothing */
    CHECK(png.data == NULL && png.len == 0);

    FerryIdentityKey key_a, key_b, got;
    OK(ferry_node_identity(a, &key_a));
    OK(ferry_node_identity(b, &key_b));
    EXPECT(ferry_node_add_contact(a, code_a, &got), FERRY_RESULT_OWN_IDENTITY);
    EXPECT(ferry_node_add_contact(a, "ferry1qqqqqqq", &got),
           FERRY_RESULT_INVALID_CODE);
    char *why = ferry_node_last_error(a);
    CHECK(why && strstr(why, "checksum") != NULL);
    ferry_string_free(&why);
    EXPECT(ferry_node_add_contact(a, NULL, &got), FERRY_RESULT_NULL_ARGUMENT);
    OK(ferry_node_add_contact(a, code_b, &got));
    CHECK(memcmp(&got, &key_b, sizeof got) == 0);
    OK(ferry_node_add_contact(b, code_a, NULL));
    why = ferry_node_last_error(b);
    CHECK(why == NULL); /* no call on b has failed yet */
    ferry_string_free(&code_a);
    ferry_string_free(&code_b);

    /* Sending: limits and mistakes first. */
    FerryMessageId id;
    const char hello[] = "hello from C";
    EXPECT(ferry_node_send(a, &key_a, (const uint8_t *)hello, 5, &id),
           FERRY_RESULT_OWN_IDENTITY);
    EXPECT(ferry_node_send(a, &key_b, NULL, 5, &id),
           FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_send(a, &key_b, (const uint8_t *)hello, 5, NULL),
           FERRY_RESULT_NULL_ARGUMENT);
    size_t big_len = ferry_max_message_body() + 1;
    uint8_t *big = calloc(big_len, 1);
    EXPECT(ferry_node_send(a, &key_b, big, big_len, &id),
           FERRY_RESULT_TOO_LARGE);
    free(big);
    FerryIdentityKey stranger = key_a;
    stranger.bytes[0] ^= 0x55;
    FerryResult r = ferry_node_send(a, &stranger, (const uint8_t *)hello, 5, &id);
    CHECK(r == FERRY_RESULT_UNKNOWN_CONTACT ||
          r == FERRY_RESULT_INVALID_ARGUMENT);

    /* NULL out-pointers: refused, and nothing is allocated (valgrind
       and ASan would see a leak). */
    EXPECT(ferry_node_contact_code(a, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_peer_id(a, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_identity(a, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_safety_number(a, &key_b, NULL),
           FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_listen_addresses(a, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_peers(a, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_bridge_line(a, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_contacts(a, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_messages(a, &key_b, 0, 1, NULL),
           FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_messages(a, NULL, 0, 1, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_message_status(a, &id, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_next_event(a, 0, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_link_open(a, "x", NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_identity_key_to_hex(&key_a, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_qr_svg("ferry1x", NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_qr_png("ferry1x", 4, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_export_bundle(a, NULL, NULL, NULL),
           FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_import_bundle(a, NULL, NULL), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_node_dial(a, "", NULL), FERRY_RESULT_INVALID_ARGUMENT);
    EXPECT(ferry_node_dial(a, "/ip4/127.0.0.1/udp/9/quic-v1", NULL),
           FERRY_RESULT_DIAL);

    /* Connect A to B directly and talk. */
    char *addresses = NULL;
    OK(ferry_node_listen_addresses(b, &addresses));
    CHECK(addresses && strstr(addresses, "/p2p/") != NULL);
    /* Cut at the first line: the shortened string is still freed right. */
    char *newline = addresses ? strchr(addresses, '\n') : NULL;
    if (newline) {
        *newline = 0;
    }
    char *peer = NULL;
    EXPECT(ferry_node_dial(a, "/ip4/127.0.0.1/tcp/1", &peer), FERRY_RESULT_DIAL);
    OK(ferry_node_dial(a, addresses, &peer));
    char *b_peer = NULL;
    OK(ferry_node_peer_id(b, &b_peer));
    CHECK(peer && b_peer && strcmp(peer, b_peer) == 0);
    ferry_string_free(&peer);
    ferry_string_free(&b_peer);
    ferry_string_free(&addresses);
    char *peers = NULL;
    OK(ferry_node_peers(a, &peers));
    CHECK(peers && strstr(peers, "tcp") != NULL);
    ferry_string_free(&peers);
    char *line = (char *)1;
    OK(ferry_node_bridge_line(a, &line));
    CHECK(line == NULL);

    OK(ferry_node_send(a, &key_b, (const uint8_t *)hello, strlen(hello), &id));
    FerryStatus status;
    OK(ferry_node_message_status(a, &id, &status));
    CHECK(status.status >= FERRY_MESSAGE_STATUS_QUEUED);
    FerryEvent *event = wait_event(b, FERRY_EVENT_KIND_MESSAGE, 60);
    CHECK(event != NULL);
    if (event) {
        CHECK(event->body.len == strlen(hello));
        CHECK(memcmp(event->body.data, hello, event->body.len) == 0);
        CHECK(memcmp(&event->contact, &key_a, sizeof key_a) == 0);
        CHECK(memcmp(&event->message_id, &id, sizeof id) == 0);
        OK(ferry_node_ack(b, &event->message_id));
        /* Scribbling on an event changes nothing about its free. */
        event->body.data += 1;
        event->body.len = 0;
        event->text = NULL;
        ferry_event_free(&event);
        ferry_event_free(&event); /* guarded */
        CHECK(event == NULL);
    }
    CHECK(wait_status(a, &id, FERRY_MESSAGE_STATUS_DELIVERED, 60));

    /* History, contacts, safety numbers. */
    FerryMessageList *page = NULL;
    OK(ferry_node_messages(a, &key_b, 0, 10, &page));
    CHECK(page && page->len == 1);
    if (page && page->len == 1) {
        CHECK(page->items[0].outgoing);
        CHECK(page->items[0].status.status == FERRY_MESSAGE_STATUS_DELIVERED);
        CHECK(page->items[0].body.len == strlen(hello));
    }
    ferry_message_list_free(&page);
    ferry_message_list_free(&page);
    OK(ferry_node_messages(b, &key_a, 0, 10, &page));
    CHECK(page && page->len == 1 && !page->items[0].outgoing &&
          page->items[0].received_at > 0);
    ferry_message_list_free(&page);

    OK(ferry_node_rename_contact(a, &key_b, "Bob"));
    const char bad_name[] = {'B', (char)0xc3, 0};
    EXPECT(ferry_node_rename_contact(a, &key_b, bad_name),
           FERRY_RESULT_INVALID_ARGUMENT);
    EXPECT(ferry_node_rename_contact(a, &key_b, "two\nlines"),
           FERRY_RESULT_INVALID_ARGUMENT);
    OK(ferry_node_mark_verified(a, &key_b));
    r = ferry_node_mark_verified(a, &stranger);
    CHECK(r == FERRY_RESULT_UNKNOWN_CONTACT || r == FERRY_RESULT_INVALID_ARGUMENT);
    FerryContactList *contacts = NULL;
    OK(ferry_node_contacts(a, &contacts));
    CHECK(contacts && contacts->len == 1);
    if (contacts && contacts->len == 1) {
        /* An app may scribble on what it got: the free never reads it. */
        contacts->items[0].name = NULL;
        contacts->len = 0;
        contacts->items = NULL;
        ferry_contact_list_free(&contacts);
        OK(ferry_node_contacts(a, &contacts));
    }
    if (contacts && contacts->len == 1) {
        CHECK(contacts->items[0].verified);
        CHECK(contacts->items[0].name &&
              strcmp(contacts->items[0].name, "Bob") == 0);
    }
    ferry_contact_list_free(&contacts);
    char *number_a = NULL, *number_b = NULL;
    OK(ferry_node_safety_number(a, &key_b, &number_a));
    OK(ferry_node_safety_number(b, &key_a, &number_b));
    CHECK(number_a && number_b && strcmp(number_a, number_b) == 0);
    ferry_string_free(&number_a);
    ferry_string_free(&number_b);

    /* Several threads on one node at once, sending too. */
    struct hammer h[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        h[i].node = a;
        h[i].contact = key_b;
        h[i].rounds = 5;
        h[i].errors = 0;
        pthread_create(&threads[i], NULL, hammer_thread, &h[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        CHECK(h[i].errors == 0);
    }

    /* Pairing calls on a peer that is not pairing. */
    EXPECT(ferry_node_pair(a, "not a peer id"), FERRY_RESULT_INVALID_ARGUMENT);
    OK(ferry_node_allow_pairing(a, 0));
    char *a_peer = NULL;
    OK(ferry_node_peer_id(a, &a_peer));
    FerryIdentityKey paired;
    EXPECT(ferry_node_confirm_pairing(b, a_peer, 1, &paired),
           FERRY_RESULT_UNKNOWN_PEER);
    EXPECT(ferry_node_confirm_pairing(b, NULL, 1, &paired),
           FERRY_RESULT_NULL_ARGUMENT);
    ferry_string_free(&a_peer);

    /* Bundles: A writes its messages to B, B imports them. */
    char bundle[600];
    path_of(bundle, sizeof bundle, "to-bob.ferry");
    FerryExportSummary exported;
    OK(ferry_node_export_bundle(a, bundle, &key_b, &exported));
    FerryImportSummary imported;
    OK(ferry_node_import_bundle(b, bundle, &imported));
    CHECK(imported.total == exported.envelopes);
    char garbage[600];
    path_of(garbage, sizeof garbage, "garbage.ferry");
    FILE *f = fopen(garbage, "wb");
    if (f) {
        fputs("FERRYBDL but not really a bundle", f);
        fclose(f);
    }
    EXPECT(ferry_node_import_bundle(b, garbage, &imported), FERRY_RESULT_BUNDLE);

    /* Deleting history. */
    bool removed = false;
    OK(ferry_node_delete_message(a, &id, 0, &removed));
    CHECK(!removed); /* A sent it; it never received it */
    OK(ferry_node_delete_message(a, &id, 1, &removed));
    CHECK(removed);
    size_t count = 0;
    OK(ferry_node_delete_conversation(a, &key_b, &count));
    CHECK(count == 20); /* the threads' messages */

    /* Removing a contact. */
    OK(ferry_node_remove_contact(a, &key_b, &removed));
    CHECK(removed);
    OK(ferry_node_remove_contact(a, &key_b, &removed));
    CHECK(!removed);
    EXPECT(ferry_node_send(a, &key_b, (const uint8_t *)hello, 5, &id),
           FERRY_RESULT_UNKNOWN_CONTACT);

    /* Stop: the rest of the events, then CLOSED; every call CLOSED. */
    OK(ferry_node_stop(a));
    OK(ferry_node_stop(a));
    int drained = 0;
    for (;;) {
        FerryEvent *e = NULL;
        FerryResult rr = ferry_next_event(a, 1000, &e);
        if (rr == FERRY_RESULT_OK) {
            ferry_event_free(&e);
            drained++;
            continue;
        }
        CHECK(rr == FERRY_RESULT_CLOSED);
        break;
    }
    (void)drained;
    EXPECT(ferry_next_event(a, 0, &event), FERRY_RESULT_CLOSED);
    EXPECT(ferry_node_send(a, &key_b, (const uint8_t *)hello, 5, &id),
           FERRY_RESULT_CLOSED);
    EXPECT(ferry_node_contacts(a, &contacts), FERRY_RESULT_CLOSED);

    /* The wipe. */
    OK(ferry_node_wipe(b));
    EXPECT(ferry_node_wipe(b), FERRY_RESULT_CLOSED);
    char bob_dir[600];
    struct stat st;
    path_of(bob_dir, sizeof bob_dir, "bob");
    CHECK(stat(bob_dir, &st) != 0);

    ferry_node_free(&a);
    ferry_node_free(&a); /* guarded double free */
    CHECK(a == NULL);
    ferry_node_free(&b);
}

/* One direction of a hand-pumped link: bytes read from one link and not
   yet written into the other. Never blocks on a write (a full buffer is
   retried on the next turn), so one thread can pump both directions. */
struct pipe_state {
    uint8_t buf[4096];
    size_t len;
    size_t off;
};

static int pump(FerryLink *from, FerryLink *to, struct pipe_state *p) {
    if (p->off == p->len) {
        p->off = p->len = 0;
        FerryResult r = ferry_link_read(from, p->buf, sizeof p->buf, 5, &p->len);
        if (r == FERRY_RESULT_TIMEOUT) {
            return 0;
        }
        if (r != FERRY_RESULT_OK) {
            return -1;
        }
    }
    size_t written = 0;
    FerryResult r = ferry_link_write(to, p->buf + p->off, p->len - p->off, 0,
                                     &written);
    if (r == FERRY_RESULT_OK) {
        p->off += written;
    } else if (r != FERRY_RESULT_TIMEOUT) {
        return -1;
    }
    return 1;
}

static void test_link_pumped_by_hand(void) {
    FerryNode *c = start_node("carol");
    FerryNode *d = start_node("dave");
    if (!c || !d) {
        ferry_node_free(&c);
        ferry_node_free(&d);
        return;
    }
    char *code_c = NULL, *code_d = NULL;
    FerryIdentityKey key_d;
    OK(ferry_node_contact_code(c, &code_c));
    OK(ferry_node_contact_code(d, &code_d));
    OK(ferry_node_add_contact(c, code_d, &key_d));
    OK(ferry_node_add_contact(d, code_c, NULL));
    ferry_string_free(&code_c);
    ferry_string_free(&code_d);

    FerryLink *lc = NULL, *ld = NULL;
    EXPECT(ferry_link_open(c, "", &lc), FERRY_RESULT_INVALID_ARGUMENT);
    OK(ferry_link_open(c, "ble-to-dave", &lc));
    OK(ferry_link_open(d, "ble-to-carol", &ld));
    CHECK(ferry_link_id(lc) != 0);
    uint8_t small[4];
    size_t n = 0;
    EXPECT(ferry_link_read(lc, NULL, 4, 0, &n), FERRY_RESULT_NULL_ARGUMENT);
    EXPECT(ferry_link_read(lc, small, 0, 0, &n), FERRY_RESULT_INVALID_ARGUMENT);
    EXPECT(ferry_link_write(lc, NULL, 3, 0, &n), FERRY_RESULT_NULL_ARGUMENT);

    const char body[] = "over a radio link pumped by hand";
    FerryMessageId id;
    OK(ferry_node_send(c, &key_d, (const uint8_t *)body, strlen(body), &id));
    int got = 0;
    double deadline = now_s() + 90;
    struct pipe_state c_to_d = {.len = 0, .off = 0};
    struct pipe_state d_to_c = {.len = 0, .off = 0};
    while (!got && now_s() < deadline) {
        if (pump(lc, ld, &c_to_d) < 0 || pump(ld, lc, &d_to_c) < 0) {
            fprintf(stderr, "a link closed\n");
            failures++;
            break;
        }
        FerryEvent *event = NULL;
        if (ferry_next_event(d, 0, &event) == FERRY_RESULT_OK) {
            if (event->kind == FERRY_EVENT_KIND_MESSAGE &&
                event->body.len == strlen(body) &&
                memcmp(event->body.data, body, event->body.len) == 0) {
                got = 1;
            }
            ferry_event_free(&event);
        }
    }
    CHECK(got);

    /* Closing one end: its reads and writes end with CLOSED (once what was
       buffered is read). */
    OK(ferry_link_close(lc));
    EXPECT(ferry_link_write(lc, (const uint8_t *)"x", 1, 0, &n),
           FERRY_RESULT_CLOSED);
    uint8_t rest[4096];
    FerryResult rr = FERRY_RESULT_OK;
    for (int i = 0; i < 100 && rr == FERRY_RESULT_OK; i++) {
        rr = ferry_link_read(lc, rest, sizeof rest, 0, &n);
    }
    CHECK(rr == FERRY_RESULT_CLOSED);
    ferry_link_free(&lc);
    ferry_link_free(&lc); /* guarded */
    CHECK(lc == NULL);
    ferry_node_free(&c);
    ferry_node_free(&d);
    /* The link may outlive its node: what is buffered, then CLOSED. */
    FerryResult r = FERRY_RESULT_OK;
    for (int i = 0; i < 100 && r == FERRY_RESULT_OK; i++) {
        r = ferry_link_read(ld, rest, sizeof rest, 100, &n);
    }
    CHECK(r == FERRY_RESULT_CLOSED);
    ferry_link_free(&ld);
}

struct waiter {
    FerryNode *node;
    FerryResult last;
    int events;
};

/* Waits for events until the node stops (the app's event thread). */
static void *event_thread(void *arg) {
    struct waiter *w = arg;
    for (;;) {
        FerryEvent *event = NULL;
        FerryResult r = ferry_next_event(w->node, 60000, &event);
        if (r == FERRY_RESULT_OK) {
            w->events++;
            ferry_event_free(&event);
            continue;
        }
        w->last = r;
        if (r != FERRY_RESULT_TIMEOUT) {
            return NULL;
        }
    }
}

/* One call, with a long timeout; nothing else. */
static void *one_wait(void *arg) {
    struct waiter *w = arg;
    FerryEvent *event = NULL;
    w->last = ferry_next_event(w->node, 60000, &event);
    ferry_event_free(&event);
    return NULL;
}

static void test_stop_and_free_with_threads_waiting(void) {
    /* Two threads wait at once; stop wakes both with CLOSED at once. */
    FerryNode *e = start_node("erin");
    if (!e) {
        return;
    }
    struct waiter w1 = {e, FERRY_RESULT_OK, 0}, w2 = {e, FERRY_RESULT_OK, 0};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, event_thread, &w1);
    pthread_create(&t2, NULL, event_thread, &w2);
    /* A short wait from a third caller returns on its own timeout, not
       after the others' 60 s. */
    struct timespec pause = {0, 300 * 1000 * 1000};
    nanosleep(&pause, NULL);
    double t0 = now_s();
    FerryEvent *event = NULL;
    FerryResult r = ferry_next_event(e, 100, &event);
    ferry_event_free(&event);
    CHECK(r == FERRY_RESULT_TIMEOUT || r == FERRY_RESULT_OK);
    CHECK(now_s() - t0 < 5);
    t0 = now_s();
    OK(ferry_node_stop(e));
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK(now_s() - t0 < 15);
    CHECK(w1.last == FERRY_RESULT_CLOSED && w2.last == FERRY_RESULT_CLOSED);
    char *code = NULL;
    EXPECT(ferry_node_contact_code(e, &code), FERRY_RESULT_CLOSED);
    CHECK(code == NULL);
    FerryIdentityKey me;
    EXPECT(ferry_node_identity(e, &me), FERRY_RESULT_CLOSED);
    ferry_node_free(&e);

    /* Freeing while a thread is blocked inside ferry_next_event: the free
       ends that call (CLOSED) and waits for it before freeing. */
    FerryNode *f = start_node("frank");
    if (!f) {
        return;
    }
    for (;;) { /* drain start-up events, so the waiter blocks */
        FerryEvent *ev = NULL;
        if (ferry_next_event(f, 200, &ev) != FERRY_RESULT_OK) {
            break;
        }
        ferry_event_free(&ev);
    }
    struct waiter w3 = {f, FERRY_RESULT_OK, 0};
    pthread_t t3;
    pthread_create(&t3, NULL, one_wait, &w3);
    nanosleep(&pause, NULL);
    t0 = now_s();
    ferry_node_free(&f);
    CHECK(f == NULL);
    pthread_join(t3, NULL);
    CHECK(w3.last == FERRY_RESULT_CLOSED);
    CHECK(now_s() - t0 < 15);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <scratch directory>\n", argv[0]);
        return 2;
    }
    snprintf(scratch, sizeof scratch, "%s", argv[1]);
    test_version_and_codes();
    test_misuse_without_a_node();
    test_two_nodes();
    test_link_pumped_by_hand();
    test_stop_and_free_with_threads_waiting();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("harness: all checks passed\n");
    return 0;
}
