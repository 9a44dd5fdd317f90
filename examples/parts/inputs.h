/* The inputs main.c runs, in flash: inputs.c defines them (`mcugen run` writes one). */
#ifndef PART_INPUTS_H
#define PART_INPUTS_H

#include <stdint.h>

#include "model.h"

extern const model_input_t mcugen_inputs[][MODEL_INPUT_SIZE];
extern const uint32_t mcugen_input_count;

#endif
