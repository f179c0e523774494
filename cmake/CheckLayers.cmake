# Fails, naming each file and include, when a file of a layer includes a header of a layer it may not see
# (cmake/Layers.cmake). Run as: cmake -DSRC=<source root> [-DSTAMP=<file to touch on success>] -P CheckLayers.cmake
# Includes are project headers written from a layer's root ("core/check.h", "tasks/task.h"); any other
# quoted include (a header beside the file, a generated one) stays inside its layer.
cmake_minimum_required(VERSION 3.20)
include(${CMAKE_CURRENT_LIST_DIR}/Layers.cmake)
if(NOT SRC)
  message(FATAL_ERROR "CheckLayers.cmake: pass -DSRC=<the source root>")
endif()

# The layer an include's first path component names ("core/check.h" -> core, "tasks/..." -> tasks).
get_filename_component(SRC "${SRC}" ABSOLUTE)
foreach(layer IN LISTS LRA_LAYERS)
  string(REGEX REPLACE "^lib/" "" p "${LRA_LAYER_DIR_${layer}}")
  string(REGEX REPLACE "/.*" "" p "${p}")
  set(LAYER_OF_${p} ${layer})
endforeach()

set(problems "")
set(checked 0)
foreach(layer IN LISTS LRA_LAYERS)
  lra_layer_closure(${layer} allowed)
  file(GLOB_RECURSE files "${SRC}/${LRA_LAYER_DIR_${layer}}/*.h" "${SRC}/${LRA_LAYER_DIR_${layer}}/*.cpp"
       "${SRC}/${LRA_LAYER_DIR_${layer}}/*.cu" "${SRC}/${LRA_LAYER_DIR_${layer}}/*.cuh")
  foreach(f IN LISTS files)
    math(EXPR checked "${checked} + 1")
    file(STRINGS "${f}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
    file(RELATIVE_PATH rel "${SRC}" "${f}")
    foreach(line IN LISTS lines)
      string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]*)\".*" "\\1" inc "${line}")
      if(NOT inc MATCHES "/")
        continue()
      endif()
      string(REGEX REPLACE "/.*" "" first "${inc}")
      if(NOT DEFINED LAYER_OF_${first})
        continue()
      endif()
      set(target ${LAYER_OF_${first}})
      if(NOT target IN_LIST allowed)
        list(JOIN allowed ", " allowed_text)
        string(APPEND problems "  ${rel}: #include \"${inc}\": layer '${layer}' may not include layer '${target}' (it sees: ${allowed_text})\n")
      endif()
    endforeach()
  endforeach()
endforeach()

if(problems)
  message(FATAL_ERROR "lra layers: includes that point up or sideways (the allowed layers are in cmake/Layers.cmake; "
                      "move the shared piece down to a layer both may see instead):\n${problems}")
endif()
message(STATUS "lra layers: ${checked} files, every include points down")
if(STAMP)
  file(TOUCH "${STAMP}")
endif()
