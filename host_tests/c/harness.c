/* A host program around a generated model, for runs under sanitizers: reads inputs from a
 * file (whole multiples of the input size), writes the outputs to another. Built with
 * -DMODEL_HEADER='"name.h"' -DMODEL_INVOKE=name_invoke -DMODEL_INPUT_SIZE=... and the
 * element types -DMODEL_INPUT_T=name_input_t -DMODEL_OUTPUT_T=name_output_t (default int8_t). */
#include <stdio.h>
#include <stdlib.h>

#include MODEL_HEADER

#ifndef MODEL_INPUT_T
#define MODEL_INPUT_T int8_t
#endif
#ifndef MODEL_OUTPUT_T
#define MODEL_OUTPUT_T int8_t
#endif

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s INPUTS OUTPUTS\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    FILE *out = fopen(argv[2], "wb");
    if (in == NULL || out == NULL) {
        perror("harness");
        return 2;
    }
    static MODEL_INPUT_T input[MODEL_INPUT_SIZE];
    static MODEL_OUTPUT_T output[MODEL_OUTPUT_SIZE];
    while (fread(input, 1, sizeof input, in) == sizeof input) {
        if (MODEL_INVOKE(input, output) != 0) {
            return 3;
        }
        fwrite(output, 1, sizeof output, out);
    }
    fclose(in);
    return fclose(out) == 0 ? 0 : 2;
}
