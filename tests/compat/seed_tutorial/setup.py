import os

from setuptools import find_packages, setup

if __name__ == "__main__":
    base_dir = os.path.dirname(__file__)
    src_dir = os.path.join(base_dir, "src")

    about = {}
    with open(os.path.join(src_dir, "my_package", "__about__.py")) as f:
        exec(f.read(), about)

    with open(os.path.join(base_dir, "README.rst")) as f:
        long_description = f.read()

    install_requirements = [
        "gristmill[covid-shared]",
    ]

    test_requirements = [
        "pytest",
        "pytest-mock",
    ]

    internal_requirements = []

    setup(
        name=about["__title__"],
        version=about["__version__"],

        description=about["__summary__"],
        long_description=long_description,
        license=about["__license__"],
        url=about["__uri__"],

        author=about["__author__"],
        author_email=about["__email__"],

        package_dir={"": "src"},
        packages=find_packages(where="src"),
        include_package_data=True,

        install_requires=install_requirements,
        tests_require=test_requirements,
        extras_require={
            "test": test_requirements,
            "internal": internal_requirements,
            "dev": [test_requirements, internal_requirements],
        },

        # This is where we register your tasks.
        entry_points={"console_scripts": [
            "my_task1=my_package.my_task1:my_task1",
            "my_task2=my_package.my_task2:my_task2",
            "my_task3=my_package.my_task3:my_task3",
            "my_cli=my_package.cli:my_main_entry_point",
        ]},
        zip_safe=False,
    )
