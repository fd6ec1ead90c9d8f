/* Trains the character-level GRU language model of gru.kn with plain SGD on a short repeated
 * text: each step takes 16 random windows of 33 characters, and the compiled `gru_step` does
 * the forward pass through the scan, its gradient and the update in one call, in a
 * preallocated workspace. Prints the loss as it falls, then the next-character accuracy on
 * windows it has not trained on.
 * Usage: gru [steps] (default 600). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gru.h"

#define BATCH GRU_STEP_TEXT_DIM0
#define WINDOW GRU_STEP_TEXT_DIM1

static const char TEXT[] = "the quick brown fox jumps over the lazy dog while the lazy cat sleeps ";

static unsigned long long state = 42;

/* A small deterministic generator (xorshift64*), uniform in [0, 1). */
static double uniform(void) {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (double)((state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* Character codes: a-z are 0-25, space is 26. */
static int32_t code(char c) { return c == ' ' ? 26 : c - 'a'; }

/* BATCH windows of the (endlessly repeated) text, each starting at a random offset. */
static void windows(int32_t *text) {
    size_t n = strlen(TEXT);
    for (int b = 0; b < BATCH; b++) {
        size_t start = (size_t)(uniform() * (double)n);
        for (int t = 0; t < WINDOW; t++) text[b * WINDOW + t] = code(TEXT[(start + (size_t)t) % n]);
    }
}

static void init(float *w, int n, float scale) {
    for (int i = 0; i < n; i++) w[i] = scale * (float)(2.0 * uniform() - 1.0);
}

/* The parameters in gru_step's order, with their sizes and initial scales. */
enum { WZ, UZ, BZ, WR, UR, BR, WH, UH, BH, WO, BO, PARAMS };
static const int SIZE[PARAMS] = {
    GRU_STEP_WZ_SIZE, GRU_STEP_UZ_SIZE, GRU_STEP_BZ_SIZE, GRU_STEP_WR_SIZE, GRU_STEP_UR_SIZE, GRU_STEP_BR_SIZE,
    GRU_STEP_WH_SIZE, GRU_STEP_UH_SIZE, GRU_STEP_BH_SIZE, GRU_STEP_WO_SIZE, GRU_STEP_BO_SIZE};
static const float SCALE[PARAMS] = {0.5f, 0.15f, 0.0f, 0.5f, 0.15f, 0.0f, 0.5f, 0.15f, 0.0f, 0.15f, 0.0f};

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 600;
    float *p[2][PARAMS];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < PARAMS; i++) {
            p[k][i] = calloc((size_t)SIZE[i], sizeof(float));
            if (!p[k][i]) return 1;
        }
    }
    for (int i = 0; i < PARAMS; i++) init(p[0][i], SIZE[i], SCALE[i]);
    static int32_t text[BATCH * WINDOW];
    float lr = 1.0f, loss = 0.0f, first = 0.0f;
    void *workspace = aligned_alloc(64, GRU_STEP_WORKSPACE_BYTES + 64);
    int cur = 0;
    for (int s = 0; s < steps; s++) {
        int next = 1 - cur;
        float **a = p[cur], **b = p[next];
        windows(text);
        if (gru_step(text, a[WZ], a[UZ], a[BZ], a[WR], a[UR], a[BR], a[WH], a[UH], a[BH], a[WO], a[BO], &lr, &loss,
                     b[WZ], b[UZ], b[BZ], b[WR], b[UR], b[BR], b[WH], b[UH], b[BH], b[WO], b[BO], workspace) != 0) {
            fprintf(stderr, "gru_step failed\n");
            return 1;
        }
        if (s == 0) first = loss;
        if (s % (steps / 10 > 0 ? steps / 10 : 1) == 0) printf("step %5d  loss %.4f\n", s, loss);
        cur = next;
    }
    float acc = 0.0f, total = 0.0f;
    for (int trial = 0; trial < 4; trial++) {
        float **a = p[cur];
        windows(text);
        if (gru_accuracy(text, a[WZ], a[UZ], a[BZ], a[WR], a[UR], a[BR], a[WH], a[UH], a[BH], a[WO], a[BO], &acc,
                         NULL) != 0)
            return 1;
        total += acc / 4.0f;
    }
    printf("final loss %.4f (from %.4f), accuracy on new windows %.3f\n", loss, first, total);
    free(workspace);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < PARAMS; i++) free(p[k][i]);
    return 0;
}
