# kiln for CMake projects.
#
#   include(Kiln)            # with this folder on CMAKE_MODULE_PATH
#   kiln_add_model(mlp model.kn [OPT_LEVEL 3] [TARGET_CPU native])
#   target_link_libraries(app PRIVATE mlp)
#
# compiles model.kn with `kiln build --output-kind static` into the build tree whenever the
# source changes, and defines an imported static library target NAME whose include directory
# holds the generated header NAME.h. Set KILN_EXECUTABLE to use a kiln that is not on PATH.

find_program(KILN_EXECUTABLE kiln)
if(NOT KILN_EXECUTABLE)
  message(FATAL_ERROR "kiln not found: put it on PATH or set -DKILN_EXECUTABLE=/path/to/kiln")
endif()

function(kiln_add_model name source)
  cmake_parse_arguments(ARG "" "OPT_LEVEL;TARGET_CPU" "" ${ARGN})
  get_filename_component(source "${source}" ABSOLUTE)
  set(out "${CMAKE_CURRENT_BINARY_DIR}/kiln/${name}")
  set(lib "${out}/lib${name}.a")
  set(options)
  if(DEFINED ARG_OPT_LEVEL)
    list(APPEND options "-O${ARG_OPT_LEVEL}")
  endif()
  if(DEFINED ARG_TARGET_CPU)
    list(APPEND options --target-cpu "${ARG_TARGET_CPU}")
  endif()
  file(MAKE_DIRECTORY "${out}")
  add_custom_command(
    OUTPUT "${lib}" "${out}/${name}.h" "${out}/${name}.json"
    COMMAND "${KILN_EXECUTABLE}" build "${source}" --module-name "${name}" --output-kind static ${options} -o "${out}"
    DEPENDS "${source}"
    COMMENT "kiln: compiling ${source}"
    VERBATIM)
  add_custom_target("${name}_kiln" DEPENDS "${lib}")
  add_library("${name}" STATIC IMPORTED GLOBAL)
  set_target_properties("${name}" PROPERTIES
    IMPORTED_LOCATION "${lib}"
    INTERFACE_INCLUDE_DIRECTORIES "${out}"
    INTERFACE_LINK_LIBRARIES m)
  add_dependencies("${name}" "${name}_kiln")
endfunction()
