// The report as one self-contained HTML page: the tables, and SVG plots of accuracy against speed and of
// the training curves.
#pragma once

#include <string>

#include "results/report.h"

namespace lra {

std::string report_html(const Report& report);

}  // namespace lra
